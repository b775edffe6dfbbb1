-- Bring-your-own-token (DESIGN §3's `provider_token`): a method's list may
-- name provider_token beside a credential type that identifies the client.
-- It never stands alone: it authenticates nobody, it only lets the client's
-- X-Provider-Token go upstream instead of the operator's key.
ALTER TABLE gk_route_methods DROP CONSTRAINT gk_route_methods_credentials_check;
ALTER TABLE gk_route_methods ADD CONSTRAINT gk_route_methods_credentials_check CHECK (
    cardinality(credentials) > 0
    AND credentials <@ ARRAY['public', 'api_key', 'basic', 'hmac', 'provider_token']
    AND (NOT 'public' = ANY (credentials) OR cardinality(credentials) = 1)
    AND (NOT 'provider_token' = ANY (credentials)
         OR credentials && ARRAY['api_key', 'basic', 'hmac'])
);
