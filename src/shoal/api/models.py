"""``GET /v1/models`` and ``GET /v1/models/{id}``: the model catalog."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from shoal.api.deps import authenticated, context, services
from shoal.core.backend import ModelCard

router = APIRouter(dependencies=[Depends(authenticated)])


def card_dict(card: ModelCard) -> dict[str, Any]:
    """A model in the OpenAI list shape, plus context length and capabilities."""
    return {
        "id": card.id,
        "object": "model",
        "created": card.created,
        "owned_by": card.owned_by,
        "context_length": card.context_length,
        "capabilities": list(card.capabilities),
        "aliases": list(card.aliases),
        "description": card.description,
        **card.extra,
    }


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Every model this server serves."""
    cards = services(request).pipeline.cards(context(request))
    return {"object": "list", "data": [card_dict(c) for c in cards]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    """One model by id or alias; 404 if unknown."""
    pipeline, ctx = services(request).pipeline, context(request)
    card = pipeline.resolve(model_id, ctx).card
    return card_dict(next((c for c in pipeline.cards(ctx) if c.id == card.id), card))
