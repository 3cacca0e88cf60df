"""LangGraph deployment entry point: multi-turn chat about one image (``langgraph.json``: ``chat``).

First turn: ``{"image": "<path on the server>", "messages": [{"role": "user", "content": "..."}]}``
(or ``"query"`` instead of messages); later turns on the same thread send only the new message. The
server's checkpointer keeps the session; the twin is built once per thread.

Images are read only under the server's ``access.image_roots`` (``DTWIN_ACCESS__IMAGE_ROOTS``), fixed
when the server loads the graph (a run's context cannot widen them; with none, no image is read).
"""

from dtwin_agent.config import resolve_settings
from dtwin_agent.integrations.chat import build_chat_graph

graph = build_chat_graph(access=resolve_settings().access).compile()
graph.name = "dtwin-chat"
