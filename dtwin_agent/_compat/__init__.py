"""Stand-ins for third-party modules that cannot be installed here, used only when the real ones fail.

Why this exists: no torchvision wheel works on CPU-only machines like the reference ones (every
build fails at import with ``operator torchvision::nms does not exist``: its ``_C.so`` links CUDA
libraries; see ENVIRONMENT.md), yet ``import segment_anything`` needs four torchvision functions
and none of its compiled kernels, and MobileSAM (``mobile_sam``) needs the same four plus four timm
helpers. Each library here is a :class:`~dtwin_agent._compat._install.StandIn`: the real
``import`` is tried first (once per process), and users with a working torchvision / timm always
get the real one; only when it fails is a small module tree (:mod:`~dtwin_agent._compat.torchvision`,
:mod:`~dtwin_agent._compat.timm`) registered in ``sys.modules``, and only while segment-anything or
MobileSAM is imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dtwin_agent._compat._install import StandIn

__all__ = ["TIMM", "TORCHVISION", "mobile_sam_for_import", "torchvision_for_import"]


def _torchvision_tree() -> Any:
    from dtwin_agent._compat import torchvision

    return torchvision.tree()


def _timm_tree() -> Any:
    from dtwin_agent._compat import timm

    return timm.tree()


TORCHVISION = StandIn("torchvision", ("torchvision",), _torchvision_tree)
TIMM = StandIn("timm", ("timm.models.layers", "timm.models.registry"), _timm_tree)


#: ``with torchvision_for_import(): import segment_anything`` (yields True for the real torchvision).
torchvision_for_import = TORCHVISION.for_import


@contextmanager
def mobile_sam_for_import() -> Iterator[tuple[bool, bool]]:
    """Both stand-ins while ``mobile_sam`` is imported; yields ``(real timm, real torchvision)``.

    timm is tried first, so a real timm imports against the real torchvision or not at all.
    """
    with TIMM.for_import() as real_timm, TORCHVISION.for_import() as real_tv:
        yield real_timm, real_tv
