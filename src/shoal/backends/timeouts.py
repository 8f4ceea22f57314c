"""An upstream's time limits: the one definition of their fields and defaults (the catalog validates them).

Kept apart from :mod:`shoal.backends.upstream` so that reading the catalog does not import the HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed to connect, to get the first byte of the answer, and for each later read.

    ``read`` bounds each wait for more of a stream, and reading a whole answer's body
    once its headers have come.

    ``total`` bounds a non-streamed answer, which sends nothing until it is complete
    (OpenAI's SDK waits 600 s by default).
    """

    connect: float = 5.0
    first_byte: float = 30.0
    read: float = 120.0
    total: float = 600.0
