-- 0001: the policy tables (DESIGN §3): routes with per-method credential
-- rules, clients, API keys, client secrets, grants and limits, plus the
-- trigger that tells every replica about a change.
--
-- Forward-only: once applied anywhere, this file is never edited; changes
-- come as new numbered files. Constraints live here as well as in the
-- application, so a hand-written INSERT cannot create a state gatekeeper
-- would refuse to load.

-- Ids: [A-Za-z0-9._-]{1,64} (UUIDs fit), the values X-Auth-*-ID headers carry.
CREATE DOMAIN gk_id AS TEXT CHECK (VALUE ~ '^[A-Za-z0-9._-]{1,64}$');

CREATE TABLE gk_routes (
    id          gk_id PRIMARY KEY,
    -- lower-case host, "*.suffix" or "*"; no port, no trailing dot
    domain      TEXT NOT NULL CHECK (
                    domain = '*'
                    OR domain ~ '^(\*\.)?[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*$'
                       AND length(domain) <= 255),
    -- exact normalised path, or a prefix ending in "/*"
    path        TEXT NOT NULL CHECK (
                    path ~ '^/'
                    AND path !~ '//|/\.\.?(/|$)|[%\\;?#[:space:][:cntrl:]]'
                    AND path !~ '\*.'
                    AND (path !~ '\*' OR path ~ '/\*$')),
    service     TEXT NOT NULL CHECK (service ~ '^[A-Za-z0-9._-]{1,64}$'),
    priority    INTEGER NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (domain, path)
);

-- Per-method rules: which credential types a method accepts. "*" is the
-- rule for every method not listed. A method with no row is denied.
CREATE TABLE gk_route_methods (
    route_id    gk_id NOT NULL REFERENCES gk_routes (id) ON DELETE CASCADE,
    method      TEXT NOT NULL CHECK (method ~ '^([A-Z_-]{1,32}|\*)$'),
    credentials TEXT[] NOT NULL CHECK (
                    cardinality(credentials) > 0
                    AND credentials <@ ARRAY['public', 'api_key', 'basic', 'hmac']
                    AND (NOT 'public' = ANY (credentials) OR cardinality(credentials) = 1)),
    PRIMARY KEY (route_id, method)
);

CREATE TABLE gk_clients (
    id          gk_id PRIMARY KEY,
    name        TEXT NOT NULL CHECK (btrim(name) <> ''),
    status      TEXT NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'suspended', 'revoked')),
    metadata    JSONB NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- API keys: only the SHA-256 digest of the whole key string is stored; the
-- look-up is by digest. For a gk_ key, id is the public id inside it.
CREATE TABLE gk_api_keys (
    id           gk_id PRIMARY KEY,
    client_id    gk_id NOT NULL REFERENCES gk_clients (id) ON DELETE CASCADE,
    digest       BYTEA NOT NULL UNIQUE CHECK (length(digest) = 32),
    label        TEXT,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX gk_api_keys_client ON gk_api_keys (client_id);

-- Client secrets: a bcrypt hash for Basic; the HMAC shared secret sealed
-- with an AEAD under GATEKEEPER_MASTER_KEY (never plain text).
CREATE TABLE gk_client_secrets (
    client_id          gk_id PRIMARY KEY REFERENCES gk_clients (id) ON DELETE CASCADE,
    bcrypt_hash        TEXT CHECK (bcrypt_hash ~ '^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$'),
    hmac_secret_sealed BYTEA CHECK (length(hmac_secret_sealed) > 28),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (bcrypt_hash IS NOT NULL OR hmac_secret_sealed IS NOT NULL)
);

-- A grant's methods: exactly ARRAY['*'], or upper-case method tokens, each
-- checked on its own (no NULL element, no comma smuggled into one).
CREATE FUNCTION gk_valid_grant_methods(methods TEXT[]) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT cardinality(methods) > 0
       AND array_position(methods, NULL) IS NULL
       AND (methods = ARRAY['*']
            OR NOT EXISTS (SELECT 1 FROM unnest(methods) AS m WHERE m !~ '^[A-Z_-]{1,32}$'))
$$;

-- Grants: client × route × methods, optionally limited to model globs
-- (NULL = any model). Roles will resolve into the same shape.
CREATE TABLE gk_grants (
    client_id   gk_id NOT NULL REFERENCES gk_clients (id) ON DELETE CASCADE,
    route_id    gk_id NOT NULL REFERENCES gk_routes (id) ON DELETE CASCADE,
    methods     TEXT[] NOT NULL CHECK (gk_valid_grant_methods(methods)),
    -- NULL = any model; otherwise non-empty globs, no NULL element
    models      TEXT[] CHECK (
                    models IS NULL
                    OR (cardinality(models) > 0
                        AND array_position(models, NULL) IS NULL
                        AND NOT '' = ANY (models))),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, route_id)
);
CREATE INDEX gk_grants_route ON gk_grants (route_id);

-- Limits: N requests per window with a burst; client-wide when route_id is
-- NULL, else on the client's grant for that route (and gone with it).
CREATE TABLE gk_limits (
    client_id   gk_id NOT NULL REFERENCES gk_clients (id) ON DELETE CASCADE,
    route_id    gk_id,
    count       INTEGER NOT NULL CHECK (count > 0),
    window_secs INTEGER NOT NULL CHECK (window_secs BETWEEN 1 AND 31622400),
    burst       INTEGER NOT NULL CHECK (burst > 0),
    UNIQUE NULLS NOT DISTINCT (client_id, route_id),
    FOREIGN KEY (client_id, route_id) REFERENCES gk_grants (client_id, route_id) ON DELETE CASCADE
);

-- Every change is announced on the "gatekeeper" channel so replicas reload
-- (routes, grants, limits) or evict (keys, clients, secrets) at once. The
-- payload names the table and the client when there is one; never a secret.
CREATE FUNCTION gk_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rec     RECORD;
    client  TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN rec := OLD; ELSE rec := NEW; END IF;
    client := CASE TG_TABLE_NAME
                  WHEN 'gk_clients' THEN to_jsonb(rec) ->> 'id'
                  WHEN 'gk_routes' THEN NULL
                  WHEN 'gk_route_methods' THEN NULL
                  ELSE to_jsonb(rec) ->> 'client_id'
              END;
    PERFORM pg_notify('gatekeeper', json_build_object(
        'table', TG_TABLE_NAME, 'op', TG_OP, 'client', client)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER gk_routes_notify AFTER INSERT OR UPDATE OR DELETE ON gk_routes
    FOR EACH ROW EXECUTE FUNCTION gk_notify_change();
CREATE TRIGGER gk_route_methods_notify AFTER INSERT OR UPDATE OR DELETE ON gk_route_methods
    FOR EACH ROW EXECUTE FUNCTION gk_notify_change();
CREATE TRIGGER gk_clients_notify AFTER INSERT OR UPDATE OR DELETE ON gk_clients
    FOR EACH ROW EXECUTE FUNCTION gk_notify_change();
-- last_used_at is written in batches by the service itself: not a change
-- anyone needs to hear about.
CREATE TRIGGER gk_api_keys_notify AFTER INSERT OR DELETE OR UPDATE OF id, client_id, digest, status, expires_at ON gk_api_keys
    FOR EACH ROW EXECUTE FUNCTION gk_notify_change();
CREATE TRIGGER gk_client_secrets_notify AFTER INSERT OR UPDATE OR DELETE ON gk_client_secrets
    FOR EACH ROW EXECUTE FUNCTION gk_notify_change();
CREATE TRIGGER gk_grants_notify AFTER INSERT OR UPDATE OR DELETE ON gk_grants
    FOR EACH ROW EXECUTE FUNCTION gk_notify_change();
CREATE TRIGGER gk_limits_notify AFTER INSERT OR UPDATE OR DELETE ON gk_limits
    FOR EACH ROW EXECUTE FUNCTION gk_notify_change();

-- TRUNCATE fires no row trigger: announce it once per statement.
CREATE FUNCTION gk_notify_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gatekeeper', json_build_object(
        'table', TG_TABLE_NAME, 'op', TG_OP, 'client', NULL)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER gk_routes_truncate AFTER TRUNCATE ON gk_routes
    FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_truncate();
CREATE TRIGGER gk_route_methods_truncate AFTER TRUNCATE ON gk_route_methods
    FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_truncate();
CREATE TRIGGER gk_clients_truncate AFTER TRUNCATE ON gk_clients
    FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_truncate();
CREATE TRIGGER gk_api_keys_truncate AFTER TRUNCATE ON gk_api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_truncate();
CREATE TRIGGER gk_client_secrets_truncate AFTER TRUNCATE ON gk_client_secrets
    FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_truncate();
CREATE TRIGGER gk_grants_truncate AFTER TRUNCATE ON gk_grants
    FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_truncate();
CREATE TRIGGER gk_limits_truncate AFTER TRUNCATE ON gk_limits
    FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_truncate();
