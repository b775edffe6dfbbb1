//! The policy in PostgreSQL: reading every table into the model's
//! `Document` (and the two look-ups the request path makes on a cache
//! miss), the writes the management CLI makes, and the plain rows its
//! `list`/`show` commands print.
//!
//! Every query is a constant with an explicit column list, beside the
//! function that runs it, and listed in `STATEMENTS` so a test prepares them
//! all. Writes are one statement or one transaction. A constraint the
//! database enforces comes back as a typed error naming the row at fault;
//! PostgreSQL's own error detail (which quotes the offending row, secrets
//! and digests included) is never kept.

mod api_keys;
mod clients;
mod grants;
mod load;
mod routes;

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::core::model::{Invalid, InvalidId, Limit};
use crate::core::seal::SealError;

pub use api_keys::{
    create_key, delete_key, get_key, list_keys, set_key_expiry, set_key_status,
    touch_keys_last_used, KeyRow,
};
pub use clients::{
    clear_secrets, create_client, delete_client, get_client, list_clients, rename_client,
    set_basic_secret, set_client_status, set_hmac_secret, ClientRow, NewClient,
};
pub use grants::{
    create_grant, delete_grant, delete_limit, list_grants, list_limits, set_limit, update_grant,
    GrantRow, LimitRow,
};
pub use load::{
    client_secrets, find_key, find_key_with, load_document, load_serving_snapshot, load_snapshot,
    FIND_KEY,
};
pub use routes::{create_route, delete_route, get_route, list_routes, update_route, RouteRow};

/// Every statement this module runs, for the test that prepares them all
/// against a migrated database.
pub const STATEMENTS: &[&str] = &[
    load::SELECT_CLIENTS,
    load::SELECT_KEYS,
    load::FIND_KEY,
    load::SELECT_CLIENT_SECRETS,
    routes::SELECT_ROUTES,
    routes::INSERT_ROUTE,
    routes::UPDATE_ROUTE,
    routes::DELETE_ROUTE_METHODS,
    routes::INSERT_ROUTE_METHODS,
    routes::DELETE_ROUTE,
    clients::INSERT_CLIENT,
    clients::SET_CLIENT_STATUS,
    clients::RENAME_CLIENT,
    clients::DELETE_CLIENT,
    clients::SET_BASIC_SECRET,
    clients::SET_HMAC_SECRET,
    clients::CLEAR_SECRETS,
    clients::SELECT_CLIENT_ROWS,
    api_keys::INSERT_KEY,
    api_keys::SET_KEY_STATUS,
    api_keys::SET_KEY_EXPIRY,
    api_keys::DELETE_KEY,
    api_keys::TOUCH_KEYS,
    api_keys::SELECT_KEY_ROWS,
    api_keys::SELECT_KEY_ROW,
    grants::INSERT_GRANT,
    grants::UPDATE_GRANT,
    grants::DELETE_GRANT,
    grants::UPSERT_LIMIT,
    grants::DELETE_LIMIT,
    grants::SELECT_GRANTS,
    grants::SELECT_LIMITS,
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} `{id}` does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("{what} `{id}` already exists")]
    Duplicate { what: &'static str, id: String },
    #[error("no {what} has the id `{id}`")]
    UnknownReference { what: &'static str, id: String },
    #[error("{table} `{id}`: {problem}")]
    Invalid {
        table: &'static str,
        id: String,
        problem: String,
    },
    #[error(
        "client `{client}` has a sealed HMAC secret but no master key is set \
         (GATEKEEPER_MASTER_KEY or GATEKEEPER_MASTER_KEY_FILE)"
    )]
    MasterKeyMissing { client: String },
    #[error("the HMAC secret of client `{client}` cannot be opened")]
    Unseal {
        client: String,
        #[source]
        source: SealError,
    },
    /// A database error with no better mapping: its code and message only,
    /// never its detail (which can quote a row).
    #[error("PostgreSQL refused the statement: {message} (SQLSTATE {code})")]
    Refused { code: String, message: String },
    /// The connection or the protocol failed; no database message to show.
    #[error("the PostgreSQL query failed")]
    Postgres(#[source] tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        match e.as_db_error() {
            Some(db) => StoreError::Refused {
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
            },
            None => StoreError::Postgres(e),
        }
    }
}

/// The row a write is about and the rows it refers to, so that a constraint
/// it violates is reported against the right id.
#[derive(Clone, Copy, Debug)]
struct Subject<'a> {
    table: &'static str,
    id: &'a str,
    client: &'a str,
    route: &'a str,
    /// A route's `domain` + `path`, for the (domain, path) uniqueness.
    place: &'a str,
}

impl<'a> Subject<'a> {
    fn new(table: &'static str, id: &'a str) -> Subject<'a> {
        Subject {
            table,
            id,
            client: "",
            route: "",
            place: "",
        }
    }

    fn client(self, client: &'a str) -> Subject<'a> {
        Subject { client, ..self }
    }

    fn route(self, route: &'a str) -> Subject<'a> {
        Subject { route, ..self }
    }

    fn place(self, place: &'a str) -> Subject<'a> {
        Subject { place, ..self }
    }

    fn invalid(&self, problem: impl Into<String>) -> StoreError {
        StoreError::Invalid {
            table: self.table,
            id: self.id.to_owned(),
            problem: problem.into(),
        }
    }

    fn not_found(&self, what: &'static str) -> StoreError {
        StoreError::NotFound {
            what,
            id: self.id.to_owned(),
        }
    }

    /// The typed error for a failed write: unique, foreign-key and check
    /// violations by constraint name; anything else without its detail.
    fn error(&self, e: tokio_postgres::Error) -> StoreError {
        let Some(db) = e.as_db_error() else {
            return StoreError::Postgres(e);
        };
        let constraint = db.constraint().unwrap_or("");
        let mapped = match db.code() {
            c if *c == SqlState::UNIQUE_VIOLATION => self.duplicate(constraint),
            c if *c == SqlState::FOREIGN_KEY_VIOLATION => self.unknown_reference(constraint),
            c if *c == SqlState::CHECK_VIOLATION => Some(self.invalid(check_problem(constraint))),
            _ => None,
        };
        mapped.unwrap_or_else(|| e.into())
    }

    fn duplicate(&self, constraint: &str) -> Option<StoreError> {
        let (what, id) = match constraint {
            "gk_routes_pkey" => ("route", self.id),
            "gk_routes_domain_path_key" => ("a route on", self.place),
            "gk_route_methods_pkey" => ("a method rule of route", self.route),
            "gk_clients_pkey" => ("client", self.id),
            "gk_api_keys_pkey" => ("key", self.id),
            "gk_api_keys_digest_key" => ("a key with the digest given for", self.id),
            "gk_client_secrets_pkey" => ("a secret of client", self.client),
            "gk_grants_pkey" => ("grant", self.id),
            "gk_limits_client_id_route_id_key" => ("limit", self.id),
            _ => return None,
        };
        let id = id.to_owned();
        Some(StoreError::Duplicate { what, id })
    }

    fn unknown_reference(&self, constraint: &str) -> Option<StoreError> {
        let (what, id) = match constraint {
            "gk_api_keys_client_id_fkey"
            | "gk_client_secrets_client_id_fkey"
            | "gk_grants_client_id_fkey"
            | "gk_limits_client_id_fkey" => ("client", self.client.to_owned()),
            "gk_grants_route_id_fkey" | "gk_route_methods_route_id_fkey" => {
                ("route", self.route.to_owned())
            }
            "gk_limits_client_id_route_id_fkey" => ("grant", grant_id(self.client, self.route)),
            _ => return None,
        };
        Some(StoreError::UnknownReference { what, id })
    }
}

/// What a check constraint of `sql/` requires, in words, with its name.
fn check_problem(constraint: &str) -> String {
    let rule = match constraint {
        "gk_id_check" => "an id is 1 to 64 characters of A-Z a-z 0-9 . _ -",
        "gk_routes_domain_check" => "the domain must be a lower-case host, `*.suffix` or `*`",
        "gk_routes_path_check" => "the path must be a normalised path, or a prefix ending in `/*`",
        "gk_routes_service_check" => "the service is 1 to 64 characters of A-Z a-z 0-9 . _ -",
        "gk_route_methods_method_check" => "a method is upper-case (e.g. GET) or `*`",
        "gk_route_methods_credentials_check" => {
            "a method accepts some of api_key, basic, hmac, or `public` alone"
        }
        "gk_clients_name_check" => "the name must not be blank",
        "gk_clients_status_check" => "the status is active, suspended or revoked",
        "gk_clients_metadata_check" => "metadata must be a JSON object",
        "gk_api_keys_digest_check" => "a key digest is 32 bytes",
        "gk_api_keys_status_check" => "the status is active or revoked",
        "gk_client_secrets_bcrypt_hash_check" => {
            "not a bcrypt hash (`$2b$<cost 04-31>$` and 53 characters)"
        }
        "gk_client_secrets_hmac_secret_sealed_check" => "the sealed HMAC secret is too short",
        "gk_client_secrets_check" => "a client secret needs a bcrypt hash or an HMAC secret",
        "gk_grants_methods_check" => "methods are `*` alone, or upper-case methods",
        "gk_grants_models_check" => "models are non-empty globs (leave them out for any model)",
        "gk_limits_count_check" => "a limit's count must be positive",
        "gk_limits_window_secs_check" => "a limit's window is 1 second to 366 days",
        "gk_limits_burst_check" => "a limit's burst must be positive",
        _ => return format!("violates the check constraint `{constraint}`"),
    };
    format!("{rule} (constraint `{constraint}`)")
}

/// An id column as the model's id. The `gk_id` domain holds the same rule,
/// so a refusal means a schema this code does not know; it names the row.
fn id_column<T: FromStr<Err = InvalidId>>(
    at: &Subject<'_>,
    column: &str,
    value: &str,
) -> Result<T, StoreError> {
    value
        .parse()
        .map_err(|e| at.invalid(format!("{column} `{}` {e}", value.escape_debug())))
}

/// The error a write into `table` gets when the `gk_id` domain refuses an id
/// of the row named `row`, for a caller that must parse that id into the
/// model before writing (the CLI's `key create --client`, `grant create`):
/// it fails the same way whether the database or the parse refused it.
pub fn refused_id(table: &'static str, row: &str) -> StoreError {
    Subject::new(table, row).invalid(check_problem("gk_id_check"))
}

/// How grants (and route limits) are named in errors: `client/route`.
fn grant_id(client: &str, route: &str) -> String {
    format!("{client}/{route}")
}

/// A limit as the three `gk_limits` columns.
fn limit_columns(limit: &Limit) -> Result<(i32, i32, i32), Invalid> {
    let window = limit.window;
    let whole = window.subsec_nanos() == 0 && (1..=366 * 86_400).contains(&window.as_secs());
    let count = i32::try_from(limit.count).ok().filter(|n| *n > 0);
    let burst = i32::try_from(limit.burst).ok().filter(|n| *n > 0);
    match (count, whole, burst) {
        (Some(count), true, Some(burst)) => Ok((count, window.as_secs() as i32, burst)),
        (None, _, _) => Err(format!("a limit's count is 1 to {}", i32::MAX).into()),
        (_, false, _) => Err("a limit's window is whole seconds, 1 second to 366 days".into()),
        (_, _, None) => Err(format!("a limit's burst is 1 to {}", i32::MAX).into()),
    }
}

/// The three `gk_limits` columns as a limit.
fn limit_from_columns(count: i32, window_secs: i32, burst: i32) -> Result<Limit, Invalid> {
    let positive = |n: i32, what: &str| {
        u32::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!("the limit's {what} {n} is not positive"))
    };
    Ok(Limit {
        count: positive(count, "count")?,
        window: Duration::from_secs(u64::from(positive(window_secs, "window")?)),
        burst: positive(burst, "burst")?,
    })
}

/// `600/60s`: a limit as `Limit::parse` reads it back.
fn limit_text(count: i32, window_secs: i32) -> String {
    format!("{count}/{window_secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_convert_to_columns_and_back() {
        let limit = Limit::parse("600/1m").unwrap().with_burst(50).unwrap();
        let (count, window, burst) = limit_columns(&limit).unwrap();
        assert_eq!((count, window, burst), (600, 60, 50));
        assert_eq!(limit_from_columns(count, window, burst), Ok(limit));
        assert_eq!(
            Limit::parse(&limit_text(count, window)).unwrap().window,
            limit.window
        );
    }

    #[test]
    fn limits_the_columns_cannot_hold_are_refused() {
        let base = Limit::parse("1/1s").unwrap();
        let huge = Limit {
            count: u32::MAX,
            ..base
        };
        let fractional = Limit {
            window: Duration::from_millis(1500),
            ..base
        };
        assert!(limit_columns(&huge).unwrap_err().0.contains("count"));
        assert!(limit_columns(&fractional).unwrap_err().0.contains("window"));
        assert!(limit_from_columns(0, 60, 1).is_err());
        assert!(limit_from_columns(1, -1, 1).is_err());
    }

    #[test]
    fn check_violations_name_their_constraint() {
        let text = check_problem("gk_clients_name_check");
        assert!(text.contains("blank") && text.contains("gk_clients_name_check"));
        assert!(check_problem("gk_future_check").contains("gk_future_check"));
    }
}
