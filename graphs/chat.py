"""LangGraph deployment entry point: multi-turn chat about one image (``langgraph.json``: ``chat``).

First turn: ``{"image": "<path on the server>", "messages": [{"role": "user", "content": "..."}]}``
(or ``"query"`` instead of messages); later turns on the same thread send only the new message. The
server's checkpointer keeps the session; the twin is built once per thread.
"""

from dtwin_agent.integrations.chat import build_chat_graph

graph = build_chat_graph().compile()
graph.name = "dtwin-chat"
