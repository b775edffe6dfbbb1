//! Model-name globs for grants: `*` matches any run of characters (`:` and
//! `/` included), `?` exactly one character; everything else is literal and
//! case-sensitive.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Box<str>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GlobError {
    #[error("a model pattern must not be empty")]
    Empty,
    #[error("a model pattern is at most {max} characters")]
    TooLong { max: usize },
    #[error("a model pattern may not contain whitespace, control characters or `[]{{}}\\`")]
    BadCharacter,
}

impl Glob {
    pub const MAX_LEN: usize = 256;

    pub fn parse(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if pattern.chars().count() > Self::MAX_LEN {
            return Err(GlobError::TooLong { max: Self::MAX_LEN });
        }
        let bad = |c: char| c.is_whitespace() || c.is_control() || "[]{}\\".contains(c);
        if pattern.chars().any(bad) {
            return Err(GlobError::BadCharacter);
        }
        Ok(Glob {
            pattern: pattern.into(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Iterative wildcard match with single backtracking point: linear in
    /// practice, never exponential.
    pub fn matches(&self, name: &str) -> bool {
        let pat: Vec<char> = self.pattern.chars().collect();
        let txt: Vec<char> = name.chars().collect();
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < txt.len() {
            if p < pat.len() && (pat[p] == '?' || pat[p] == txt[t]) {
                p += 1;
                t += 1;
            } else if p < pat.len() && pat[p] == '*' {
                star = Some((p, t));
                p += 1;
            } else if let Some((sp, st)) = star {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        pat[p..].iter().all(|c| *c == '*')
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, name: &str) -> bool {
        Glob::parse(p).unwrap().matches(name)
    }

    #[test]
    fn stars_and_question_marks() {
        let cases = [
            ("llama3*", "llama3", true),
            ("llama3*", "llama3:8b", true),
            ("llama3*", "llama3.1:70b-instruct", true),
            ("llama3*", "Llama3", false),
            ("llama3*", "xllama3", false),
            ("qwen2.5:7b", "qwen2.5:7b", true),
            ("qwen2.5:7b", "qwen2.5:7b-instruct", false),
            ("*", "", true),
            ("*", "org/model:tag", true),
            ("gpt-4?", "gpt-4o", true),
            ("gpt-4?", "gpt-4", false),
            ("gpt-4?", "gpt-4oo", false),
            ("*/mistral*", "hf.co/mistral-7b", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("a*a*a*a*b", &"a".repeat(200), false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(m(pattern, name), expected, "{pattern} vs {name}");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(Glob::parse(""), Err(GlobError::Empty));
        assert_eq!(Glob::parse("llama 3"), Err(GlobError::BadCharacter));
        assert_eq!(Glob::parse("llama[3]"), Err(GlobError::BadCharacter));
        assert_eq!(Glob::parse("a\u{0}"), Err(GlobError::BadCharacter));
        assert!(Glob::parse(&"a".repeat(257)).is_err());
    }
}
