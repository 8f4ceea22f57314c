"""``@record`` behaves as ``@dataclass(frozen=True)`` in everything but its ``__init__``'s cost."""

from __future__ import annotations

import dataclasses
from dataclasses import field

import pytest

from shoal.core.records import record
from shoal.core.types import GenerationRequest, Message, SamplingParams


@record
class Point:
    x: int
    y: int = 2
    tags: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


@record
class Checked:
    amount: int

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError("amount must not be negative")


@record
class WithKeywords:
    name: str
    size: int = field(default=1, kw_only=True)
    label: str = field(kw_only=True, default="")


def test_positional_keyword_and_default_arguments_fill_the_fields() -> None:
    assert Point(1) == Point(x=1, y=2, tags=(), notes=[])
    p = Point(3, 4, ("a",), ["n"])
    assert (p.x, p.y, p.tags, p.notes) == (3, 4, ("a",), ["n"])
    assert repr(Point(1)) == "Point(x=1, y=2, tags=(), notes=[])"


def test_each_instance_gets_its_own_default_factory_value() -> None:
    a, b = Point(1), Point(1)
    a.notes.append("only a")
    assert b.notes == []


def test_missing_and_unknown_arguments_fail_like_a_dataclass() -> None:
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, z=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        WithKeywords("n", 5)  # type: ignore[misc]
    assert WithKeywords("n", size=5) == WithKeywords(name="n", size=5, label="")


def test_instances_stay_frozen_and_hashable() -> None:
    p = Point(1, tags=("t",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.y  # type: ignore[misc]
    assert hash(WithKeywords("n", size=2)) == hash(WithKeywords("n", size=2))
    assert len({Checked(1), Checked(1), Checked(2)}) == 2


def test_post_init_still_runs() -> None:
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)
    assert Checked(0).amount == 0


def test_replace_and_fields_see_a_dataclass() -> None:
    p = dataclasses.replace(Point(1), y=9)
    assert p == Point(1, 9)
    assert [f.name for f in dataclasses.fields(Point)] == ["x", "y", "tags", "notes"]
    assert dataclasses.asdict(Checked(3)) == {"amount": 3}


def test_slotted_or_init_false_classes_are_refused() -> None:
    with pytest.raises(TypeError, match="__slots__"):

        @record
        class Slotted:
            __slots__ = ("a",)
            a: int

    with pytest.raises(TypeError, match="init=False"):

        @record
        class Hidden:
            a: int = field(init=False, default=0)


def test_core_types_keep_their_defaults_and_cached_properties() -> None:
    request = GenerationRequest(model="m", messages=(Message(role="user", content="hi"),))
    assert request.sampling == SamplingParams()
    assert request.images == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.model = "other"  # type: ignore[misc]
