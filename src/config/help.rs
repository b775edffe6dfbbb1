//! The settings table shown: the `Environment:` section of `serve --help`,
//! and the README's table (a test holds README.md to it).

use super::settings::{Setting, Shown, SETTINGS};
use Shown::{Derived, Unset, Value};

const HELP_NAME_WIDTH: usize = 32;
const HELP_TEXT_WIDTH: usize = 64;

/// The `Environment:` section of `serve --help`: every setting, its help
/// and its default.
pub fn settings_help() -> String {
    let mut s = String::from("Environment:\n");
    for setting in SETTINGS {
        let lines = wrap(&help_words(setting), HELP_TEXT_WIDTH);
        for (i, line) in lines.iter().enumerate() {
            let name = if i == 0 { setting.name } else { "" };
            s.push_str(&format!("  {name:<HELP_NAME_WIDTH$} {line}\n"));
        }
    }
    s
}

/// A setting's help as words to wrap; the default is one word, so it is
/// never split across lines.
fn help_words(setting: &Setting) -> Vec<String> {
    let mut text = setting.help.replace('`', "");
    if let Some(file) = setting.file_variant {
        text.push_str(&format!(" (or {file}, a file holding it)"));
    }
    let mut words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    match setting.default {
        Unset => {}
        Value(v) => words.push(format!("[default: {v}]")),
        Derived(d) => words.push(format!("[default: {}]", d.replace('`', ""))),
    }
    words
}

/// Greedy word wrap; a word longer than `width` gets a line of its own.
fn wrap(words: &[String], width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in words {
        let line = lines.last_mut().expect("never empty");
        if line.is_empty() {
            line.push_str(word);
        } else if line.chars().count() + 1 + word.chars().count() <= width {
            line.push(' ');
            line.push_str(word);
        } else {
            lines.push(word.clone());
        }
    }
    lines
}

/// The README's settings table (header included), one row per setting.
pub fn settings_markdown() -> String {
    let mut s = String::from("| variable | default | meaning |\n| --- | --- | --- |\n");
    for setting in SETTINGS {
        let name = match setting.file_variant {
            Some(_) => format!("`{}` (`_FILE`)", setting.name),
            None => format!("`{}`", setting.name),
        };
        let default = match setting.default {
            Unset => "—".to_owned(),
            Value(v) => format!("`{v}`"),
            Derived(d) => d.to_owned(),
        };
        s.push_str(&format!("| {name} | {default} | {} |\n", setting.help));
    }
    s
}
