//! Reading `gk_audit`: the statements `audit tail|query` run, and a row as
//! they print it — an aligned table for people, or JSON with stable
//! snake_case names (absent values are `null`).

use std::io::Write;
use std::net::IpAddr;

use serde::Serialize;
use tokio_postgres::Row;

/// The columns every read selects, in `AuditRow` order.
macro_rules! select_rows {
    () => {
        "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
       request_id, client_id, key_id, route_id, method, host, path,
       decision, reason, source, duration_us
  FROM gk_audit"
    };
}

/// The latest `$1` rows, newest first (printed reversed).
pub const SELECT_LATEST: &str = concat!(select_rows!(), " ORDER BY id DESC LIMIT $1");

/// Rows written since the last one printed. Ids follow insertion, so a
/// batch of another replica committed late, with lower ids, can be missed
/// by `--follow`: it is a view, `query` is the record.
pub const SELECT_AFTER: &str = concat!(select_rows!(), " WHERE id > $1 ORDER BY id LIMIT 10000");

/// A filter left NULL matches everything; newest first (printed reversed).
pub const SELECT_MATCHING: &str = concat!(
    select_rows!(),
    " WHERE ($1::text IS NULL OR client_id = $1)
   AND ($2::timestamptz IS NULL OR at >= $2)
   AND ($3::text IS NULL OR reason = $3)
 ORDER BY at DESC, id DESC LIMIT $4"
);

/// One row of `gk_audit`, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct AuditRow {
    pub id: i64,
    /// RFC 3339, UTC, microseconds.
    pub at: String,
    pub request_id: Option<String>,
    pub client_id: Option<String>,
    pub key_id: Option<String>,
    pub route_id: Option<String>,
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub decision: String,
    pub reason: String,
    pub source: Option<String>,
    pub duration_us: i32,
}

impl AuditRow {
    pub fn of(row: &Row) -> Result<AuditRow, tokio_postgres::Error> {
        Ok(AuditRow {
            id: row.try_get(0)?,
            at: row.try_get(1)?,
            request_id: row.try_get(2)?,
            client_id: row.try_get(3)?,
            key_id: row.try_get(4)?,
            route_id: row.try_get(5)?,
            method: row.try_get(6)?,
            host: row.try_get(7)?,
            path: row.try_get(8)?,
            decision: row.try_get(9)?,
            reason: row.try_get(10)?,
            source: row
                .try_get::<_, Option<IpAddr>>(11)?
                .map(|ip| ip.to_string()),
            duration_us: row.try_get(12)?,
        })
    }

    fn cells(&self) -> [String; 12] {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        [
            self.at.clone(),
            self.decision.clone(),
            self.reason.clone(),
            dash(&self.client_id),
            dash(&self.key_id),
            dash(&self.route_id),
            dash(&self.method),
            dash(&self.host),
            dash(&self.path),
            dash(&self.source),
            self.duration_us.to_string(),
            dash(&self.request_id),
        ]
    }
}

pub const HEADERS: [&str; 12] = [
    "AT",
    "DECISION",
    "REASON",
    "CLIENT",
    "KEY",
    "ROUTE",
    "METHOD",
    "HOST",
    "PATH",
    "SOURCE",
    "US",
    "REQUEST_ID",
];

/// An aligned table that can grow: `--follow` prints the header once, then
/// rows as they come, each column as wide as the widest seen so far.
pub struct Table {
    widths: [usize; 12],
    header_printed: bool,
}

impl Default for Table {
    fn default() -> Table {
        Table::new()
    }
}

impl Table {
    pub fn new() -> Table {
        Table {
            widths: HEADERS.map(str::len),
            header_printed: false,
        }
    }

    pub fn print(&mut self, out: &mut impl Write, rows: &[AuditRow]) -> std::io::Result<()> {
        let cells: Vec<[String; 12]> = rows.iter().map(AuditRow::cells).collect();
        for row in &cells {
            for (w, cell) in self.widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        if !self.header_printed {
            self.line(out, &HEADERS.map(str::to_owned))?;
            self.header_printed = true;
        }
        for row in &cells {
            self.line(out, row)?;
        }
        Ok(())
    }

    fn line(&self, out: &mut impl Write, cells: &[String; 12]) -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(self.widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, path: Option<&str>) -> AuditRow {
        AuditRow {
            id,
            at: "2026-11-24T10:00:00.000001Z".into(),
            request_id: None,
            client_id: Some("team-a".into()),
            key_id: None,
            route_id: Some("chat".into()),
            method: Some("POST".into()),
            host: None,
            path: path.map(str::to_owned),
            decision: "allow".into(),
            reason: "authenticated".into(),
            source: Some("10.0.0.1".into()),
            duration_us: 42,
        }
    }

    #[test]
    fn the_table_prints_its_header_once_and_dashes_for_nothing() {
        let mut out = Vec::new();
        let mut table = Table::new();
        table.print(&mut out, &[row(1, Some("/v1/chat"))]).unwrap();
        table.print(&mut out, &[row(2, None)]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("AT ") && lines[0].ends_with("REQUEST_ID"));
        assert!(lines[1].contains("/v1/chat") && lines[1].ends_with('-'));
        assert!(lines[2].contains("  -  "), "{text}");
    }

    #[test]
    fn json_rows_have_stable_snake_case_names() {
        let v = serde_json::to_value(row(7, None)).unwrap();
        let names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "id",
            "at",
            "request_id",
            "client_id",
            "key_id",
            "route_id",
            "method",
            "host",
            "path",
            "decision",
            "reason",
            "source",
            "duration_us",
        ];
        expected.sort_unstable();
        let mut names = names;
        names.sort_unstable();
        assert_eq!(names, expected);
        assert!(v["path"].is_null() && v["duration_us"] == 42);
    }
}
