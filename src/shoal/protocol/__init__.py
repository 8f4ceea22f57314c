"""Shoal protocol package."""
