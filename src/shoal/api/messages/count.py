"""``count_tokens``: a request's prompt tokens, as exactly as the serving deployment allows.

A deployment whose backend can count (the local llama.cpp engine: its chat
template applied and tokenized, nothing evaluated) gives the exact figure; any
other deployment (upstreams, a serverless model not loaded yet) or a count that
fails gives the estimate rate limits reserve with
(:func:`shoal.core.types.typical_input_tokens`, about four characters a token).
"""

from __future__ import annotations

import logging

from shoal.core.context import RequestContext
from shoal.core.pipeline import Pipeline
from shoal.core.types import GenerationRequest, typical_input_tokens

log = logging.getLogger("shoal.api")


async def count_tokens(pipeline: Pipeline, request: GenerationRequest, context: RequestContext) -> int:
    """The prompt tokens of ``request`` on the deployment its model resolves to (404 for an unknown model)."""
    deployment = pipeline.resolve(request.model, context)
    try:
        exact = await deployment.backend.count_tokens(request)
    except Exception as exc:  # noqa: BLE001 - an estimate is still a useful answer
        log.warning("count_tokens on %s failed (%s); answering with the estimate", deployment.name, exc)
        exact = None
    return typical_input_tokens(request) if exact is None else exact
