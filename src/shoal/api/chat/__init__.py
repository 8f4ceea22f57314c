"""The chat completions front-end."""

from shoal.api.chat.router import router

__all__ = ["router"]
