//! How the plan words values: limits, expiries, method rules, model lists.
//! Never a secret or a digest.

use crate::core::model::{Grant, GrantMethods, Limit, Route};

pub(super) fn place(r: &Route) -> String {
    format!("{} {}", r.domain, r.path)
}

pub(super) fn methods_text(r: &Route) -> String {
    let explicit = r
        .methods
        .iter()
        .map(|(m, rule)| format!("{m}={}", rule.text()));
    let any = r.any_method.map(|rule| format!("*={}", rule.text()));
    let all: Vec<String> = explicit.chain(any).collect();
    match all.is_empty() {
        true => "none".into(),
        false => all.join(" "),
    }
}

pub(super) fn arrow(
    what: &str,
    old: impl std::fmt::Display,
    new: impl std::fmt::Display,
) -> String {
    format!("{what} {old} → {new}")
}

/// `600/1m burst 50`.
pub(super) fn limit_text(limit: Option<&Limit>) -> String {
    let Some(l) = limit else {
        return "none".into();
    };
    let secs = l.window.as_secs();
    let window = match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    format!("{}/{window} burst {}", l.count, l.burst)
}

pub(super) fn expiry_text(at: Option<i64>) -> String {
    let Some(at) = at else {
        return "never".into();
    };
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| at.to_string())
}

/// Methods as a set (order and repeats do not matter).
pub(super) fn methods_set(m: &GrantMethods) -> Vec<&str> {
    match m {
        GrantMethods::Any => vec!["*"],
        GrantMethods::Only(list) => {
            let mut v: Vec<&str> = list.iter().map(|m| m.as_str()).collect();
            v.sort_unstable();
            v.dedup();
            v
        }
    }
}

pub(super) fn models_set(g: &Grant) -> Option<Vec<&str>> {
    g.models.as_ref().map(|list| {
        let mut v: Vec<&str> = list.iter().map(|m| m.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    })
}

pub(super) fn models_text(g: &Grant) -> String {
    models_set(g).map_or_else(|| "any".into(), |v| v.join(","))
}
