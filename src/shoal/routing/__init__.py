"""Routing: model names to deployment candidates, policies, circuit breakers, catalog building."""
