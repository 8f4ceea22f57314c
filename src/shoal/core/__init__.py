"""Shoal core package."""
