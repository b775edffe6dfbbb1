//! Log set-up: JSON lines by default, pretty on a terminal. Decision events
//! are written by the HTTP edge; nothing logs a credential or a body.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// `level` is `Config::log_level`, already checked by config parsing
/// (a bad one stops start-up); the `info` fallback is only a backstop.
pub fn init(format: Option<LogFormat>, level: &str) {
    let filter = EnvFilter::try_new(directives(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// A bare level (`debug`, `trace`) raises gatekeeper's own logs only: the
/// libraries stay at `info`, since at debug and trace some log what they
/// send — the PostgreSQL client every statement's parameters, key digests
/// included. A full `tracing` filter (anything with `=` or `,`) is taken as
/// written, for whoever really wants a library's internals.
fn directives(level: &str) -> String {
    let level = level.trim();
    let bare = !level.contains(['=', ',']);
    let raises = matches!(level.to_ascii_lowercase().as_str(), "debug" | "trace");
    if bare && raises {
        format!("info,gatekeeper={level}")
    } else {
        level.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn a_bare_debug_or_trace_level_raises_only_gatekeepers_logs() {
        assert_eq!(directives("trace"), "info,gatekeeper=trace");
        assert_eq!(directives("DEBUG"), "info,gatekeeper=DEBUG");
        assert_eq!(directives("info"), "info");
        assert_eq!(directives("warn"), "warn");
        assert_eq!(
            directives("trace,tokio_postgres=trace"),
            "trace,tokio_postgres=trace"
        );
        assert_eq!(directives("gatekeeper=debug"), "gatekeeper=debug");
    }
}
