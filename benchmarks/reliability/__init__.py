"""The reliability suite (issue #15): a fault matrix, budget overshoot and a memory soak against a real ``shoal serve``.

Run ``python -m benchmarks.reliability`` from the repository root; it writes
``docs/reliability.md`` and ``docs/reliability.json``. The pieces are functions
(:func:`matrix.run_fault`, :func:`budget.run_budget`, :func:`soak.run_soak`) that
``tests/benchmarks/test_reliability.py`` reuses with a small N.

Modules: ``loop`` (a background event loop), ``upstream`` (the fault-injecting
OpenAI-compatible upstream), ``proxy`` (TCP proxies in front of PostgreSQL and
Redis that can be cut), ``stack`` (the services and the ``shoal serve`` process),
``calls`` (one request of each kind through the ``openai`` client, classified),
``matrix``, ``budget``, ``soak`` and ``report``.
"""
