"""The admin API: model access keys and usage, behind the admin token."""

from shoal.api.admin.router import router

__all__ = ["router"]
