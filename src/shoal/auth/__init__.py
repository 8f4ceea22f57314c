"""Shoal auth package."""
