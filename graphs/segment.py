"""LangGraph deployment entry point: the reasoning segmentation graph (``langgraph.json``: ``segment``).

Input: ``{"image": "<path of an image file on the server>", "query": "..."}``. Settings come from the
server's environment (``DTWIN_*``) and ``dtwin.toml``, or per run as the context
``{"settings": {...}}``. The server supplies the checkpointer.

Images are read only under the server's ``access.image_roots`` (``DTWIN_ACCESS__IMAGE_ROOTS``, folders
separated like ``PATH``), fixed here when the server loads the graph: a run's context cannot widen
them, and with none the graph reads no image.
"""

from dtwin_agent.config import resolve_settings
from dtwin_agent.graph import build_graph

graph = build_graph(reasoning=True, access=resolve_settings().access).compile()
graph.name = "dtwin-segment"
