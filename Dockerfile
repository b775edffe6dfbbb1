# syntax=docker/dockerfile:1
#
# gatekeeper — container image (multi-stage: a Rust build, then distroless).
#
#   docker build -t gatekeeper .
#
#   # DB-less mode: a directory holding gatekeeper.toml mounted where
#   # GATEKEEPER_CONFIG points (a directory, so that an edited file — which
#   # editors replace — is seen and reloaded)
#   docker run --rm -p 127.0.0.1:7843:7843 -p 127.0.0.1:7844:7844 \
#       -v "$PWD/policy:/etc/gatekeeper:ro" gatekeeper
#
#   # PostgreSQL mode: no file (GATEKEEPER_CONFIG= empties it), secrets as files
#   docker run --rm -e GATEKEEPER_CONFIG= \
#       -e GATEKEEPER_DATABASE_URL_FILE=/run/secrets/gatekeeper_database_url ... gatekeeper
#
# compose.example.yml runs the whole stack (PostgreSQL, Redis, migrate, serve,
# nginx, Ollama). The image holds one static path: /usr/local/bin/gatekeeper,
# run as an unprivileged user; every setting is an environment variable
# (`gatekeeper serve --help` lists them).

# ── build ───────────────────────────────────────────────────────────────────
# Debian 12 (bookworm) here and in the final image: the binary links against
# the glibc it runs with. One C dependency, mimalloc (the allocator), built
# by its crate with the image's gcc: nothing else to install.
FROM rust:1-bookworm AS build
WORKDIR /src

# What `cargo build` reads: the manifest and lock file, the sources, the
# migrations (embedded with include_str!) and the declared bench targets
# (cargo refuses a manifest whose [[bench]] files are missing).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY sql ./sql
COPY benches ./benches

# The registry and target directories are BuildKit cache mounts, so a
# rebuild after a source change recompiles gatekeeper, not its dependencies.
# Cache mounts are not part of the image: the binary is copied out, without
# the release profile's line tables (64 MB → 12 MB; backtraces still name
# the functions).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release \
 && install -D -m 0755 target/release/gatekeeper /out/gatekeeper \
 && strip --strip-debug /out/gatekeeper

# ── run ─────────────────────────────────────────────────────────────────────
# distroless cc: glibc, libgcc and CA certificates; no shell, no package
# manager. Its `nonroot` user is 65532:65532.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="gatekeeper" \
      org.opencontainers.image.description="The authorization decision service nginx asks through auth_request" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/gatekeeper /usr/local/bin/gatekeeper

# In a container the listeners must take connections from other containers:
# 0.0.0.0 instead of the loopback defaults. Publish the admin port (/metrics,
# /readyz) only where Prometheus can reach it, never through nginx.
# X-Real-IP is believed from loopback only (GATEKEEPER_TRUSTED_PROXIES):
# set it to nginx's address when nginx runs in another container.
# DB-less mode reads the mounted file; PostgreSQL mode needs it empty
# (GATEKEEPER_CONFIG=) and GATEKEEPER_DATABASE_URL(_FILE) set.
ENV GATEKEEPER_LISTEN=0.0.0.0:7843 \
    GATEKEEPER_ADMIN_LISTEN=0.0.0.0:7844 \
    GATEKEEPER_CONFIG=/etc/gatekeeper/gatekeeper.toml \
    GATEKEEPER_LOG_FORMAT=json

USER 65532:65532

# 7843: /authz, for nginx only. 7844: /livez, /readyz, /metrics.
EXPOSE 7843/tcp 7844/tcp

# `gatekeeper healthcheck` asks /readyz on GATEKEEPER_ADMIN_LISTEN (3 s
# bound) and exits 0 on 200. /readyz stays 200 while PostgreSQL or Redis is
# degraded (the replica still serves from its snapshot), so an outage of a
# store does not mark every replica unhealthy at once.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/gatekeeper", "healthcheck"]

# SIGTERM drains in-flight requests for GATEKEEPER_SHUTDOWN_GRACE (10 s):
# give `docker stop` more than that (`--stop-timeout 15`, compose
# `stop_grace_period: 15s`). SIGHUP reloads the declarative file.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gatekeeper"]
CMD ["serve"]
