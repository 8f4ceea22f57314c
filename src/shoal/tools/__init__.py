"""Built-in tools the server runs itself (web search)."""
