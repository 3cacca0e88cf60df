"""The DTwinSeger state machine.

``load_image -> select_granularity -> lookup_twin -> [propose_masks -> assign_semantics ->
build_spatial -> store_twin] -> refine (loop) -> finalize``; a twin found by ``lookup_twin`` skips
the bracketed nodes.

:func:`build_graph` returns the uncompiled builder, so callers choose the checkpointer
(``build_graph().compile(checkpointer=InMemorySaver())``); with ``perception=False`` or
``reasoning=False`` it is the reasoning or the perception half alone, which the chat graph
composes as subgraphs. Nodes read providers and limits from the run's
:class:`~dtwin_agent.graph.context.Context` only.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from dtwin_agent.config import AccessSettings, Settings
from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes import (
    assign_semantics,
    build_spatial,
    confine_image,
    finalize,
    load_image,
    lookup_twin,
    propose_masks,
    refine,
    route_after_lookup,
    route_after_refine,
    select_granularity,
    store_twin,
)
from dtwin_agent.graph.state import (
    InputState,
    OutputState,
    ReasoningInput,
    ReasoningOutput,
    State,
    TwinOutput,
)

PERCEPTION_NODES = (
    "load_image",
    "select_granularity",
    "lookup_twin",
    "propose_masks",
    "assign_semantics",
    "build_spatial",
    "store_twin",
)
REASONING_NODES = ("refine", "finalize")


def build_graph(
    *, perception: bool = True, reasoning: bool = True, access: AccessSettings | None = None
) -> StateGraph:
    """The uncompiled graph.

    Args:
        perception: include the twin-building nodes; ``False`` gives the reasoning graph, which
            starts at ``refine`` over a ``twin`` in its input (:class:`ReasoningInput`).
        reasoning: include ``refine`` and ``finalize``; ``False`` gives the perception graph, which
            stops once the twin is built (output :class:`TwinOutput`).
        access: for a graph served to other programs (``graphs/*.py``): a first node,
            ``confine_image``, reads images only under ``access.image_roots`` (none: no image).

    Raises:
        ValueError: when both halves are left out.
    """
    if not (perception or reasoning):
        raise ValueError("build_graph needs perception, reasoning or both")
    output = OutputState if perception and reasoning else (TwinOutput if perception else ReasoningOutput)
    builder = StateGraph(
        State,
        context_schema=Context,
        input_schema=InputState if perception else ReasoningInput,
        output_schema=output,
    )
    after_twin = "refine" if reasoning else END
    if perception:
        builder.add_node("load_image", load_image)
        builder.add_node("select_granularity", select_granularity)
        builder.add_node("lookup_twin", lookup_twin)
        builder.add_node("propose_masks", propose_masks)
        builder.add_node("assign_semantics", assign_semantics)
        builder.add_node("build_spatial", build_spatial)
        builder.add_node("store_twin", store_twin)
        if access is not None:
            builder.add_node("confine_image", confine_image(access))
            builder.add_edge(START, "confine_image")
            builder.add_edge("confine_image", "load_image")
        else:
            builder.add_edge(START, "load_image")
        builder.add_edge("load_image", "select_granularity")
        builder.add_edge("select_granularity", "lookup_twin")
        builder.add_conditional_edges(
            "lookup_twin", route_after_lookup, {"cached": after_twin, "build": "propose_masks"}
        )
        builder.add_edge("propose_masks", "assign_semantics")
        builder.add_edge("assign_semantics", "build_spatial")
        builder.add_edge("build_spatial", "store_twin")
        builder.add_edge("store_twin", after_twin)
    if reasoning:
        builder.add_node("refine", refine)
        builder.add_node("finalize", finalize)
        if not perception:
            builder.add_edge(START, "refine")
        builder.add_conditional_edges("refine", route_after_refine, ["refine", "finalize"])
        builder.add_edge("finalize", END)
    return builder


def recursion_limit(settings: Settings) -> int:
    """LangGraph's ``recursion_limit`` for one run: every node once, ``refine`` up to its step limit."""
    return len(PERCEPTION_NODES) + len(REASONING_NODES) + 2 * settings.reasoning.max_refine_steps + 4
