"""SQLAlchemy adapter: SQLite by default, PostgreSQL via PLUGHOST_DATABASE_URL."""
