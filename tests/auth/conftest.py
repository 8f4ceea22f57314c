"""Auth fixtures: a SQLite database for the key store; PostgreSQL / Redis helpers."""

from tests.services import db, redis_test_prefix  # noqa: F401  (fixtures)
