//! Printing: rows as JSON (the store's `*Row` structs, stable snake_case
//! field names) or as an aligned table for people.

use std::io::Write;

use serde::Serialize;

/// One value as a line of JSON.
pub(super) fn json(out: &mut impl Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

/// An aligned table: a header line, then one line per row; columns are
/// separated by two spaces and the last one is not padded.
pub(super) fn table(
    out: &mut impl Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
    line(out, &widths, &header)?;
    for row in rows {
        line(out, &widths, row)?;
    }
    Ok(())
}

fn line(out: &mut impl Write, widths: &[usize], cells: &[String]) -> std::io::Result<()> {
    let mut text = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == cells.len() {
            text.push_str(cell);
        } else {
            text.push_str(&format!("{cell:<width$}  "));
        }
    }
    writeln!(out, "{}", text.trim_end())
}

/// `-` for nothing.
pub(super) fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_every_column_but_the_last() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned(), "x".to_owned()],
            vec!["bbbb".to_owned(), "v".to_owned(), "y".to_owned()],
        ];
        table(&mut out, &["id", "what", "end"], &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "ID    WHAT        END\na     long value  x\nbbbb  v           y\n"
        );
    }
}
