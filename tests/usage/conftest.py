"""Usage fixtures: a SQLite database; PostgreSQL / Redis helpers."""

from tests.services import db, postgres_url, redis_test_prefix  # noqa: F401  (fixtures)
