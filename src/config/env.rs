//! The environment as `Config::from_map` sees it: a value is read only
//! through its entry in the settings table.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use super::settings::{listed, Setting};
use super::{err, ConfigError};

/// The variables, and the settings read so far (a test proves every entry
/// of the table is read).
pub(super) struct Env<'a> {
    vars: &'a HashMap<String, String>,
    read: RefCell<BTreeSet<&'static str>>,
}

impl<'a> Env<'a> {
    pub(super) fn new(vars: &'a HashMap<String, String>) -> Env<'a> {
        Env {
            vars,
            read: RefCell::default(),
        }
    }

    /// The value, trimmed; unset and blank are the same.
    pub(super) fn get(&self, setting: &'static Setting) -> Option<&'a str> {
        debug_assert!(listed(setting.name), "{} is not in SETTINGS", setting.name);
        self.read.borrow_mut().insert(setting.name);
        self.raw(setting.name)
    }

    /// A secret: `NAME`, or `NAME_FILE` naming a file that holds it (one
    /// trailing newline removed). Both at once is an error; no error
    /// repeats the value.
    pub(super) fn secret(&self, setting: &'static Setting) -> Result<Option<String>, ConfigError> {
        let direct = self.get(setting);
        let Some(file_name) = setting.file_variant else {
            return Ok(direct.map(str::to_owned));
        };
        match (direct, self.raw(file_name)) {
            (Some(_), Some(_)) => Err(err(
                setting.name,
                format!("set {} or {file_name}, not both", setting.name),
            )),
            (Some(v), None) => Ok(Some(v.to_owned())),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|v| Some(v.trim_end_matches(['\n', '\r']).to_owned()))
                .map_err(|e| err(file_name, format!("cannot read {path}: {e}"))),
            (None, None) => Ok(None),
        }
    }

    /// The names read so far.
    #[cfg(test)]
    pub(super) fn read(&self) -> BTreeSet<&'static str> {
        self.read.borrow().clone()
    }

    fn raw(&self, name: &str) -> Option<&'a str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }
}
