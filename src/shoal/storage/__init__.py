"""Storage: SQLAlchemy tables, repositories (the only SQL) and Alembic migrations."""
