"""Shoal: a self-hosted inference platform speaking the DigitalOcean Inference and OpenAI APIs."""

__version__ = "0.1.0"
