"""GET /v1/models and GET /v1/models/{id} against a real server."""

from __future__ import annotations

import time

import openai
import pytest

from .conftest import MODEL_ID

pytestmark = pytest.mark.e2e


def test_list_models_has_the_served_model(client: openai.OpenAI) -> None:
    page = client.models.list()
    ids = [m.id for m in page.data]
    assert ids == [MODEL_ID]
    model = page.data[0]
    assert model.object == "model"
    assert model.owned_by == "shoal"
    assert isinstance(model.created, int)
    assert 1_600_000_000 < model.created <= time.time() + 60
    extra = model.model_extra or {}
    assert isinstance(extra.get("context_length"), int) and extra["context_length"] > 0
    assert extra["context_length"] == 4096  # the default --ctx-per-slot
    caps = extra.get("capabilities")
    assert isinstance(caps, list) and "chat" in caps and "responses" in caps and "streaming" in caps


def test_list_models_raw_shape(http) -> None:
    r = http.get("/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [MODEL_ID]


def test_retrieve_model(client: openai.OpenAI) -> None:
    model = client.models.retrieve(MODEL_ID)
    assert model.id == MODEL_ID
    assert model.object == "model"
    assert (model.model_extra or {}).get("context_length") == 4096


def test_retrieve_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.status_code == 404
    err = info.value.response.json()["error"]
    assert err["code"] == "model_not_found"
    assert err["param"] == "model"
    assert "no-such-model" in err["message"]
