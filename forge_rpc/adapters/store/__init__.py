"""PostgreSQL + pgvector storage: the shared pool and the schema migrations. Later store modules (the usage
ledger, RAG, model preferences, jobs) build on these."""

from .connect import create_pool
from .migrations import Migration, MigrationError, load_migrations, migrate

__all__ = ["Migration", "MigrationError", "create_pool", "load_migrations", "migrate"]
