"""LangGraph deployment entry point: the reasoning segmentation graph (``langgraph.json``: ``segment``).

Input: ``{"image": "<path of an image file on the server>", "query": "..."}``. Settings come from the
server's environment (``DTWIN_*``) and ``dtwin.toml``, or per run as the context
``{"settings": {...}}``. The server supplies the checkpointer.
"""

from dtwin_agent.graph import build_graph

graph = build_graph(reasoning=True).compile()
graph.name = "dtwin-segment"
