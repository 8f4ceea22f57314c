"""The Responses API front-end."""

from shoal.api.responses.router import router

__all__ = ["router"]
