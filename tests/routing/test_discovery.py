"""Replica set logic: URL checks, membership from config / DNS / admin, reconciliation, health hysteresis."""

from __future__ import annotations

import pytest

from shoal.routing.discovery import Health, Membership, address_url, host_port, normalize_url, reconcile

A, B, C = "http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1", "http://10.0.0.3:8000/v1"


@pytest.mark.parametrize("bad", ["", "   ", "ftp://h/v1", "10.0.0.1:8000", "http:///v1", "http://h:99999/v1",
                                 "http://h:port/v1", "http://u:p@h/v1", "http://h/v1?x=1", "http://h/v1#f", 42, None])
def test_malformed_urls_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        normalize_url(bad)


def test_urls_are_normalized() -> None:
    assert normalize_url(" http://h:1/v1/ ") == "http://h:1/v1"
    assert normalize_url("https://[::1]:8443") == "https://[::1]:8443"


def test_names_and_addresses() -> None:
    assert host_port("http://10.0.0.1:8000/v1") == "10.0.0.1:8000"
    assert host_port("https://api.example/v1") == "api.example:443"
    assert host_port("http://[fd00::1]:80/v1") == "[fd00::1]:80"
    assert address_url("http", "10.0.0.1", 8080, "/v1") == "http://10.0.0.1:8080/v1"
    assert address_url("https", "fd00::1", 8080, "v1/") == "https://[fd00::1]:8080/v1"
    assert address_url("http", "10.0.0.1", 8080, "/") == "http://10.0.0.1:8080"


def test_reconcile() -> None:
    assert reconcile([], [A, B]) == ([A, B], [])
    assert reconcile([A, B], [B, C]) == ([C], [A])
    assert reconcile([A, B], [B, A]) == ([], [])
    assert reconcile([A], []) == ([], [A])


def test_membership_merges_sources_once_each() -> None:
    m = Membership([A + "/", B])
    assert m.desired() == [A, B]
    m.discover([C, B, C])
    assert m.desired() == [A, B, C]
    assert m.sources(B) == ["config", "dns"]
    m.discover([])  # the DNS answer shrank: only what DNS alone wanted goes
    assert m.desired() == [A, B]


def test_admin_add_and_remove() -> None:
    m = Membership([A])
    assert not m.add(A + "/")  # duplicate, however written
    assert m.add(C)
    assert m.desired() == [A, C] and m.sources(C) == ["admin"]
    assert m.remove(C) and m.desired() == [A]
    assert not m.remove(C)
    assert not m.remove(B)


def test_admin_removal_outlasts_dns_until_added_again() -> None:
    m = Membership()
    m.discover([A, B])
    assert m.remove(A)
    m.discover([A, B])  # DNS still lists it: the admin API has the last word
    assert m.desired() == [B]
    assert m.add(A)
    assert m.desired() == [A, B]


def test_health_hysteresis() -> None:
    h = Health(unhealthy_after=2, healthy_after=2)
    assert h.up
    assert not h.record(False) and h.up  # one failed probe is not enough
    assert not h.record(True) and h.up  # and a good one resets the count
    assert not h.record(False)
    assert h.record(False) and not h.up
    assert not h.record(True) and not h.up
    assert h.record(True) and h.up


def test_health_starting_down_comes_up_on_first_good_probe() -> None:
    h = Health(unhealthy_after=1, healthy_after=1, up=False)
    assert h.record(True) and h.up
    assert h.record(False) and not h.up
