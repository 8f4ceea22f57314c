"""``POST /v1/embeddings`` (OpenAI's Embeddings API)."""

from shoal.api.embeddings.router import router

__all__ = ["router"]
