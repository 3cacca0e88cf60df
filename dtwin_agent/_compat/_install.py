"""One helper for every stand-in: try the real module, else register a module tree in ``sys.modules``.

A :class:`StandIn` knows the root name (``torchvision``), what to probe (the modules the user of
the stand-in imports) and the stand-in tree (``{module name: {attribute: value}}``, built on
first need). :meth:`StandIn.for_import` is the usual entry: the stand-in exists only while a
library that needs it is imported; libraries bind the names at import time, so it can leave
``sys.modules`` afterwards and other libraries that probe for the real one (transformers does)
find it absent instead of an incomplete tree.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

MARKER = "__dtwin_stand_in__"

Tree = Mapping[str, Mapping[str, Any]]


def _package(name: str, attributes: Mapping[str, Any]) -> types.ModuleType:
    module = types.ModuleType(name, f"dtwin-agent stand-in for {name} (the real one failed to import)")
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=True)
    module.__path__ = []  # a package: other submodules give a clean ModuleNotFoundError
    module.__package__ = name
    setattr(module, MARKER, True)
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


class StandIn:
    """The real ``root`` module when it imports, else a stand-in tree, for one third-party library.

    Args:
        root: the top-level module name (``"torchvision"``, ``"timm"``).
        probe: the modules whose import proves the real library works.
        tree: builds ``{module name: {attribute: value}}`` of the stand-in (called once, when the
            real library fails); each submodule is also set as an attribute of its parent.

    """

    def __init__(self, root: str, probe: tuple[str, ...], tree: Callable[[], Tree]) -> None:
        self.root = root
        self.probe = probe
        self._tree = tree
        self.real: bool | None = None  # None until probed, once per process

    def active(self) -> bool:
        """Whether ``sys.modules[root]`` is this stand-in."""
        module = sys.modules.get(self.root)
        return bool(module is not None and getattr(module, MARKER, False))

    def ensure(self) -> bool:
        """Make ``import root`` work: the real one if it imports (tried once), else the stand-in.

        A failed real import (not installed, or compiled operators that do not load) leaves
        half-imported modules behind; they are removed before the stand-in is registered.

        Returns:
            True when the real library is in use, False when the stand-in is.

        """
        if self.active():
            return False
        if self.real is None:
            try:
                for name in self.probe:
                    importlib.import_module(name)
                self.real = True
            except Exception:  # noqa: BLE001 - ImportError, or RuntimeError from operator registration
                self.real = False
        if self.real:
            return True
        self._drop(stand_in_only=False)
        modules = {name: _package(name, attributes) for name, attributes in self._tree().items()}
        for name, module in modules.items():
            parent, _, leaf = name.rpartition(".")
            if parent in modules:
                setattr(modules[parent], leaf, module)
        sys.modules.update(modules)
        return False

    def remove(self) -> None:
        """Take the stand-in out of ``sys.modules`` (modules that imported from it keep their names)."""
        self._drop(stand_in_only=True)

    @contextmanager
    def for_import(self) -> Iterator[bool]:
        """:meth:`ensure` while the ``with`` block imports a library that needs ``root``, then :meth:`remove`.

        Yields:
            True when the real library is in use, False when the stand-in is.

        """
        real = self.ensure()
        try:
            yield real
        finally:
            if not real:
                self.remove()

    def _drop(self, *, stand_in_only: bool) -> None:
        for name in [n for n in sys.modules if n == self.root or n.startswith(self.root + ".")]:
            if not stand_in_only or getattr(sys.modules[name], MARKER, False):
                del sys.modules[name]
