"""The llama.cpp server settings every local engine starts from (generation and embedding alike)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def server_params(path: Path, model_id: str, *, parallel: int, n_ctx: int, threads: int | None,
                  api_key: str, verbose: bool) -> Any:
    """``xllamacpp.CommonParams`` for one model: its file, slots, context, threads, alias, loopback key, logs.

    llama.cpp's own HTTP port would otherwise bypass Shoal's keys and limits: ``api_key`` is a random
    secret only Shoal knows.
    """
    import xllamacpp

    threads = threads or max(1, os.cpu_count() or 1)
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_parallel = parallel
    params.n_ctx = n_ctx
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    # Decode threads sleep between graphs instead of spinning: a spinning pool starves the event loop
    # that streams the tokens (measured: 1-stream tok/s 23 -> 31 on 2 cores), and an idle engine must
    # not take CPU from its neighbours.
    params.cpuparams.poll = 0
    params.model_alias = {model_id}
    params.api_keys = [api_key]
    params.verbosity = 3 if verbose else 1
    return params


def chat_server_params(path: Path, model_id: str, *, slots: int, ctx_per_slot: int, threads: int | None,
                       api_key: str, verbose: bool) -> Any:
    """:func:`server_params` for a generating server: ``slots`` slots of ``ctx_per_slot`` tokens each,
    the model's Jinja chat template, and prompt caching (the plain and the speculating server alike)."""
    params = server_params(path, model_id, parallel=slots, n_ctx=ctx_per_slot * slots, threads=threads,
                           api_key=api_key, verbose=verbose)
    params.use_jinja = True
    params.cache_prompt = True
    return params
