"""The Anthropic Messages front-end."""

from shoal.api.messages.router import router

__all__ = ["router"]
