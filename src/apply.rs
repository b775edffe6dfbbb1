//! `gatekeeper apply FILE`: make the database match a declarative file.
