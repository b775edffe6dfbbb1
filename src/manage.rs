//! The management CLI for PostgreSQL mode: route, client, key, grant, limit.
