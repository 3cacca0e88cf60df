"""The public API at the top of the package (DESIGN.md's entry points), light to import."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import dtwin_agent
from dtwin_agent.errors import DTwinError

ENTRY_POINTS = {
    "build_twin",
    "segment",
    "SegmentationResult",
    "DigitalTwin",
    "TwinObject",
    "Relation",
    "Settings",
    "resolve_settings",
    "DTwinSegmentTool",
    "ChatSession",
    "build_graph",
    "__version__",
}


def test_every_public_name_resolves_and_the_entry_points_are_there() -> None:
    assert ENTRY_POINTS <= set(dtwin_agent.__all__)
    for name in dtwin_agent.__all__:
        assert getattr(dtwin_agent, name) is not None, name
    assert set(dtwin_agent.__all__) <= set(dir(dtwin_agent))
    assert dtwin_agent.__version__ == version("dtwin-agent")


def test_every_exported_exception_is_a_project_error() -> None:
    errors = [dtwin_agent.__dict__.get(name) for name in dtwin_agent.__all__]
    exported = [e for e in errors if isinstance(e, type) and issubclass(e, BaseException)]
    assert len(exported) >= 10 and all(issubclass(e, DTwinError) for e in exported)


def test_importing_the_package_loads_no_heavy_library() -> None:
    code = (
        "import sys, dtwin_agent; "
        "print(sorted(m for m in ('torch', 'langchain_core', 'langgraph', 'numpy', 'PIL') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
