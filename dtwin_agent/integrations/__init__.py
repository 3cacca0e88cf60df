"""The front doors for other programs: the LangChain tool, chat sessions and the MCP server."""
