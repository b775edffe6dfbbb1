// gatekeeper — the njs body bridge (njs 0.7, Debian's libnginx-mod-http-js).
//
// A plain auth_request subrequest never carries the request body, so
// gatekeeper cannot check what depends on it (HMAC signatures over the body,
// model allow-lists). On body-bound locations nginx runs `authorize` instead:
//
//     location /v1/ {
//         client_max_body_size 8m;
//         client_body_buffer_size 8m;     # = client_max_body_size: never a temp file
//         client_body_in_single_buffer on;
//         set $gk_backend @openai;        # where an allowed request is proxied from
//         js_content gatekeeper.authorize;
//     }
//
// It reads the body, asks gatekeeper with POST /_authz_body (gatekeeper.conf:
// the body plus the X-Original-* headers and X-Original-Body: present), and
//   - on 2xx copies the identity and rate-limit headers into the $gk_*
//     variables and hands the request to $gk_backend (internalRedirect);
//   - on 401/403 copies the deny headers and hands it to @gk_deny, which
//     renders the final status and JSON body exactly as for auth_request;
//   - on anything else (gatekeeper unreachable, timeout) renders a 503.
// A body that is not in memory is refused (413), never passed unchecked.

// Headers of an allow, and the variables they go to.
var ALLOW_HEADERS = [
    ['X-Auth-Reason', 'gk_reason'],
    ['X-Auth-Route-ID', 'gk_route_id'],
    ['X-Auth-Client-ID', 'gk_client_id'],
    ['X-Auth-Client-Name', 'gk_client_name'],
    ['X-Auth-Key-ID', 'gk_key_id'],
    ['X-Auth-Provider-Token', 'gk_provider_token'],
    ['X-RateLimit-Limit', 'gk_ratelimit_limit'],
    ['X-RateLimit-Remaining', 'gk_ratelimit_remaining'],
    ['X-RateLimit-Reset', 'gk_ratelimit_reset']
];

// Headers of a deny, and the variables @gk_deny reads.
var DENY_HEADERS = [
    ['X-Auth-Status', 'gk_status'],
    ['X-Auth-Reason', 'gk_reason'],
    ['WWW-Authenticate', 'gk_www_authenticate'],
    ['Retry-After', 'gk_retry_after'],
    ['X-RateLimit-Limit', 'gk_ratelimit_limit'],
    ['X-RateLimit-Remaining', 'gk_ratelimit_remaining'],
    ['X-RateLimit-Reset', 'gk_ratelimit_reset']
];

function copyHeaders(r, reply, pairs) {
    for (var i = 0; i < pairs.length; i++) {
        var value = reply.headersOut[pairs[i][0]];
        r.variables[pairs[i][1]] = (value === undefined || value === null) ? '' : String(value);
    }
}

// Ends the request through @gk_deny with the given status and reason.
function deny(r, status, reason) {
    r.variables.gk_status = String(status);
    r.variables.gk_reason = reason;
    r.internalRedirect('@gk_deny');
}

// The body as bytes, or null when nginx did not keep it in memory (it went
// to a temporary file: client_body_buffer_size is below the body's size).
function requestBody(r) {
    var body;
    try {
        body = r.requestBuffer;
    } catch (e) {
        return null;                        // "request body is in a file"
    }
    if (body === undefined || body === null) {
        // No body buffers at all: fine when none was announced.
        return announcedBody(r) ? null : '';
    }
    return body;
}

function announcedBody(r) {
    var te = r.headersIn['Transfer-Encoding'];
    if (te !== undefined && /chunked/i.test(te)) {
        return true;
    }
    var length = r.headersIn['Content-Length'];
    return length !== undefined && Number(length) > 0;
}

async function authorize(r) {
    var backend = r.variables.gk_backend;
    if (!backend) {
        r.error('gatekeeper: $gk_backend is not set on this location');
        return deny(r, 503, 'store_unavailable');
    }
    var body = requestBody(r);
    if (body === null) {
        r.warn('gatekeeper: request body not in memory (raise client_body_buffer_size '
               + 'to client_max_body_size); refused');
        return deny(r, 413, 'request_too_large');
    }

    var reply;
    try {
        // njs 0.7 refuses an empty string as a subrequest body: send none.
        var options = body.length > 0 ? { method: 'POST', body: body } : { method: 'POST' };
        reply = await r.subrequest('/_authz_body', options);
    } catch (e) {
        r.error('gatekeeper: /_authz_body subrequest failed: ' + e);
        return deny(r, 503, 'store_unavailable');
    }

    if (reply.status >= 200 && reply.status < 300) {
        copyHeaders(r, reply, ALLOW_HEADERS);
        r.internalRedirect(backend);
        return;
    }
    if (reply.status === 413) {
        // The subrequest refused the body's size (a location limit below the
        // site's): the same reason the client would get from the site itself.
        return deny(r, 413, 'request_too_large');
    }
    if (reply.status === 401 || reply.status === 403) {
        copyHeaders(r, reply, DENY_HEADERS);
        r.internalRedirect('@gk_deny');
        return;
    }
    // 5xx from the proxy: gatekeeper unreachable, timed out, or broken.
    r.error('gatekeeper: /authz answered ' + reply.status + ' (expected 2xx, 401 or 403)');
    return deny(r, 503, 'store_unavailable');
}

// The identity headers the sites replace with gatekeeper's values (or drop).
var IDENTITY_HEADERS = {
    'x-auth-client-id': true,
    'x-auth-client-name': true,
    'x-auth-key-id': true,
    'x-auth-route-id': true
};

// js_set $gk_forbidden_header: the first client header named X-Auth-* that
// the sites do not replace (lower-cased), or '' when there is none. nginx
// cannot remove headers by a name pattern, so such a request is refused
// (gatekeeper.conf) rather than passed with a header an upstream might
// take for gatekeeper's.
function forbiddenHeader(r) {
    var headers = r.rawHeadersIn;
    for (var i = 0; i < headers.length; i++) {
        var name = String(headers[i][0]).toLowerCase();
        if (name.indexOf('x-auth-') === 0 && !IDENTITY_HEADERS[name]) {
            return name;
        }
    }
    return '';
}

export default { authorize: authorize, forbiddenHeader: forbiddenHeader };
