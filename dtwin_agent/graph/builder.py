"""The DTwinSeger state machine.

``select_granularity -> propose_masks -> assign_semantics -> build_spatial -> refine (loop) -> finalize``

:func:`build_graph` returns the uncompiled builder, so callers choose the checkpointer
(``build_graph().compile(checkpointer=InMemorySaver())``). Nodes read providers and limits from
the run's :class:`~dtwin_agent.graph.context.Context` only.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes import (
    assign_semantics,
    build_spatial,
    finalize,
    propose_masks,
    refine,
    route_after_refine,
    select_granularity,
)
from dtwin_agent.graph.state import InputState, OutputState, State

PERCEPTION_NODES = ("select_granularity", "propose_masks", "assign_semantics", "build_spatial")


def build_graph(*, perception: bool = True, reasoning: bool = True) -> StateGraph:
    """The uncompiled graph.

    Args:
        perception: include the twin-building nodes; ``False`` starts at ``refine`` over a
            ``twin`` already in the input (chat sessions reuse one twin across turns).
        reasoning: include ``refine`` and ``finalize``; ``False`` stops after the twin is built.
    """
    if not perception:
        builder = StateGraph(State, context_schema=Context, output_schema=OutputState)
        return _add_reasoning(builder, START)
    builder = StateGraph(State, context_schema=Context, input_schema=InputState, output_schema=OutputState)
    builder.add_node("select_granularity", select_granularity)
    builder.add_node("propose_masks", propose_masks)
    builder.add_node("assign_semantics", assign_semantics)
    builder.add_node("build_spatial", build_spatial)
    builder.add_edge(START, "select_granularity")
    builder.add_edge("select_granularity", "propose_masks")
    builder.add_edge("propose_masks", "assign_semantics")
    builder.add_edge("assign_semantics", "build_spatial")
    if not reasoning:
        builder.add_edge("build_spatial", END)
        return builder
    return _add_reasoning(builder, "build_spatial")


def _add_reasoning(builder: StateGraph, after: str) -> StateGraph:
    """``after -> refine (loop) -> finalize -> END``."""
    builder.add_node("refine", refine)
    builder.add_node("finalize", finalize)
    builder.add_edge(after, "refine")
    builder.add_conditional_edges("refine", route_after_refine, ["refine", "finalize"])
    builder.add_edge("finalize", END)
    return builder
