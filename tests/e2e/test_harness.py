"""The test harness itself: a server whose port was taken before it could bind it starts on another."""

from __future__ import annotations

import socket

import pytest

from .conftest import ServerFactory

pytestmark = pytest.mark.e2e


def test_a_lost_port_race_is_retried_on_a_new_port(server_factory: ServerFactory) -> None:
    srv = server_factory(start=False)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", srv.port))  # what another process did between free_port() and the bind
        squatter.listen()
        taken = srv.port
        srv.start()
        assert srv.port != taken
        with srv.http() as http:
            assert http.get("/models").status_code == 200
