"""The real server's Response objects and stream events validate against the Open Responses schema.

The official ``openai`` client talks to ``shoal serve`` (test model); what it received is checked
with ``openresponses-types``: created, retrieved, streamed (every event), and cut by max_output_tokens.
"""

from __future__ import annotations

import pytest

from tests.api.responses.open_responses import validate_events, validate_response
from tests.e2e.conftest import MODEL_ID, ServerProcess

pytestmark = pytest.mark.e2e


def test_created_retrieved_and_streamed_responses_validate(server: ServerProcess) -> None:
    client = server.client(timeout=300)  # the machine may be busy; bounded all the same
    created = client.responses.create(model=MODEL_ID, instructions="Answer briefly.", input="Say hi.",
                                      max_output_tokens=16, temperature=0, prompt_cache_key="e2e")
    validate_response(created.model_dump(mode="json"))
    assert created.to_dict()["prompt_cache_key"] == "e2e"
    validate_response(client.responses.retrieve(created.id).model_dump(mode="json"))
    events = [e.model_dump(mode="json") for e in client.responses.create(
        model=MODEL_ID, input="Count to fifty.", max_output_tokens=4, temperature=0, stream=True)]
    validate_events(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["output"][-1]["status"] == "incomplete"
