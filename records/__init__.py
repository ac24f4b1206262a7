"""Call records: SQLAlchemy models, Alembic migrations, the CallRecorder observer, exports."""
