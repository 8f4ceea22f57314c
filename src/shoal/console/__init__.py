"""The web console: catalog, playground, keys and usage, served at ``/`` from files inside the package."""

from shoal.console.router import install

__all__ = ["install"]
