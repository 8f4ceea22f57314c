"""``@record``: a frozen dataclass that costs no more to build than a plain one.

``@dataclass(frozen=True)`` sets each field in ``__init__`` through
``object.__setattr__`` (its own ``__setattr__`` refuses), about 0.2 µs a field;
a relayed request builds a dozen such values (request, sampling, usage, events,
its usage row), which showed in a gateway's CPU profile. ``@record`` makes the
same dataclass and then replaces only ``__init__`` with one that writes the
fields straight into the instance's ``__dict__``. Everything else is the
dataclass's own: parameters and defaults, ``__post_init__``, ``repr``, ``eq``,
``hash``, ``replace()``, and ``FrozenInstanceError`` on any later assignment.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def record(cls: type[T]) -> type[T]:
    """``@dataclass(frozen=True)`` with a direct ``__init__`` (see the module docstring)."""
    made: Any = dataclass(frozen=True)(cls)
    if "__slots__" in made.__dict__:
        raise TypeError(f"@record needs instances with a __dict__; {cls.__name__} has __slots__")
    env: dict[str, Any] = {"_MISSING": MISSING}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in fields(made):
        if not f.init:
            raise TypeError(f"@record does not support init=False fields ({cls.__name__}.{f.name})")
        if f.default is not MISSING:
            env[f"_default_{f.name}"] = f.default
            param = f"{f.name}=_default_{f.name}"
        elif f.default_factory is not MISSING:
            env[f"_factory_{f.name}"] = f.default_factory
            param = f"{f.name}=_MISSING"
            body.append(f"    if {f.name} is _MISSING:\n        {f.name} = _factory_{f.name}()")
        else:
            param = f.name
        (keyword if f.kw_only else positional).append(param)
        body.append(f"    fields[{f.name!r}] = {f.name}")
    if hasattr(made, "__post_init__"):
        body.append("    self.__post_init__()")
    params = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({params}):\n    fields = self.__dict__\n" + "\n".join(body) + "\n"
    exec(source, env)  # noqa: S102 - the source is built above from the class's own field names
    init = env["__init__"]
    init.__qualname__ = f"{made.__qualname__}.__init__"
    init.__doc__ = made.__init__.__doc__
    made.__init__ = init
    return made  # type: ignore[no-any-return]
