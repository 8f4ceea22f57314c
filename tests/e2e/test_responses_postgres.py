"""PostgreSQL mode: two servers share one database, and a chain started on one continues on the other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import fresh_postgres

from .conftest import MODEL_ID, ServerFactory

pytestmark = pytest.mark.e2e


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test (dropped afterwards)."""
    with fresh_postgres() as url:
        yield url


def test_chain_continues_across_replicas(server_factory: ServerFactory, pg_database: str) -> None:
    args = ("--database-url", pg_database, "--parallel", "1", "--api-key", "shared-key-0123456789")
    one = server_factory(*args)
    two = server_factory(*args)
    with one.client("shared-key-0123456789") as a, two.client("shared-key-0123456789") as b:
        r1 = a.responses.create(model=MODEL_ID, input="My name is Ada.", max_output_tokens=4, temperature=0)
        r2 = b.responses.create(model=MODEL_ID, input="What is my name?", previous_response_id=r1.id,
                                max_output_tokens=4, temperature=0)
        assert r2.previous_response_id == r1.id
        assert r2.usage.input_tokens > r1.usage.input_tokens
        r3 = a.responses.create(model=MODEL_ID, input="Again?", previous_response_id=r2.id, max_output_tokens=4)
        assert r3.usage.input_tokens > r2.usage.input_tokens
        assert a.responses.retrieve(r2.id).output_text == r2.output_text
        assert [i.content[0].text for i in b.responses.input_items.list(r3.id).data] == ["Again?"]
        b.responses.delete(r1.id)
        with pytest.raises(Exception) as err:
            a.responses.retrieve(r1.id)
        assert getattr(err.value, "status_code", None) == 404
