"""Lease upkeep of background responses: renew ours, stop the ones stopped elsewhere, fail the orphaned.

Every replica runs one :class:`LeaseKeeper`. Each tick (a third of the lease) it

* renews the leases of the background responses running here; one whose row is no
  longer active was cancelled, deleted, or failed by another replica, and its run is
  stopped (``stop(id, stored_status_or_"deleted")``);
* sweeps: any active row whose lease ran out belonged to a process that stopped
  (killed, crashed, cut off from the database longer than the lease) and is marked
  failed. Every replica sweeps; the conditional UPDATE makes that safe.

So a response is never stuck: at most a lease plus a tick after its process stops,
some replica fails it; and a restart (with whatever data directory) fails nothing
that another replica is still running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from shoal.storage.responses import ResponseStore

log = logging.getLogger("shoal.responses")


class LeaseKeeper:
    """Keeps this replica's background leases alive and sweeps expired ones, every ``lease_seconds / 3``."""

    def __init__(self, store: ResponseStore, running: Callable[[], Collection[str]],
                 stop: Callable[[str, str], None]) -> None:
        self.store = store
        self.running = running
        self.stop = stop
        self.period = store.lease_seconds / 3
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Tick in the background until :meth:`aclose` (needs a running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:
                # The database is away: runs go on, and if this lasts past the lease a sibling fails them.
                log.warning("background response leases: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.period)

    async def tick(self) -> None:
        """Renew, stop what was stopped elsewhere, sweep."""
        ids = set(self.running())
        if ids:
            renewed = await self.store.renew(ids)
            for response_id in ids - renewed:
                # (A run that finished meanwhile wrote that itself; ``stop`` leaves finished runs alone.)
                self.stop(response_id, await self.store.status(response_id) or "deleted")
        swept = await self.store.sweep()
        if swept:
            log.warning("marked %d background response(s) failed: the server running them stopped "
                        "(lease of %.0f s expired): %s", len(swept), self.store.lease_seconds, ", ".join(swept))

    async def aclose(self) -> None:
        """Stop ticking."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
