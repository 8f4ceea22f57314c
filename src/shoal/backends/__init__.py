"""Shoal backends package."""
