//! PostgreSQL mode: the connection pool and the schema migrations.
