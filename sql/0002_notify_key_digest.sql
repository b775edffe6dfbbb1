-- Key notifications also carry the key's digest (hex), so every replica can
-- drop that key's record from the shared Redis cache at once. A digest is
-- the SHA-256 of the key, as stored in gk_api_keys; never the key itself.
CREATE OR REPLACE FUNCTION gk_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rec     RECORD;
    client  TEXT;
    digest  TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN rec := OLD; ELSE rec := NEW; END IF;
    client := CASE TG_TABLE_NAME
                  WHEN 'gk_clients' THEN to_jsonb(rec) ->> 'id'
                  WHEN 'gk_routes' THEN NULL
                  WHEN 'gk_route_methods' THEN NULL
                  ELSE to_jsonb(rec) ->> 'client_id'
              END;
    -- (Each field access sits in its own branch: PL/pgSQL resolves a
    -- record's fields when the statement runs, and only keys have a digest.)
    IF TG_TABLE_NAME = 'gk_api_keys' THEN
        digest := encode(rec.digest, 'hex');
    END IF;
    PERFORM pg_notify('gatekeeper', json_build_object(
        'table', TG_TABLE_NAME, 'op', TG_OP, 'client', client, 'digest', digest)::text);
    -- A key whose digest changed: the old digest's record must go too.
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'gk_api_keys' THEN
        IF OLD.digest IS DISTINCT FROM NEW.digest THEN
            PERFORM pg_notify('gatekeeper', json_build_object(
                'table', TG_TABLE_NAME, 'op', TG_OP, 'client', client,
                'digest', encode(OLD.digest, 'hex'))::text);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;
