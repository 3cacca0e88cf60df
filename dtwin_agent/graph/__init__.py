"""The LangGraph state machine: state, context, nodes (one module each) and the builder."""

from dtwin_agent.graph.builder import PERCEPTION_NODES, REASONING_NODES, build_graph, recursion_limit

__all__ = ["PERCEPTION_NODES", "REASONING_NODES", "build_graph", "recursion_limit"]
