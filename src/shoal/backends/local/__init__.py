"""Shoal backends.local package."""
