//! Model-name globs for grants (DESIGN §11): a glob that is exactly `*`
//! matches every model; otherwise `*` matches any run of characters except
//! `/` (it crosses `:` and `.`), `?` exactly one character other than `/`;
//! everything else is literal and case-sensitive.
//!
//! `/` is where Ollama's model names change meaning: `host/namespace/model`
//! names another registry, so `llama3*` must never reach
//! `llama3.attacker.example/ns/evil`. A pattern that spells `/` out
//! (`meta-llama/*`) still matches below that namespace.

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

    /// The pattern `*` alone: every model, whatever its name or origin.
    pub fn matches_everything(&self) -> bool {
        &*self.pattern == "*"
    }

    /// Iterative wildcard match with single backtracking point: linear in
    /// practice, never exponential.
    pub fn matches(&self, name: &str) -> bool {
        if self.matches_everything() {
            return true;
        }
        let pat: Vec<char> = self.pattern.chars().collect();
        let txt: Vec<char> = name.chars().collect();
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < txt.len() {
            if p < pat.len() && (pat[p] == txt[t] || (pat[p] == '?' && txt[t] != '/')) {
                p += 1;
                t += 1;
            } else if p < pat.len() && pat[p] == '*' {
                star = Some((p, t));
                p += 1;
            } else if let Some((sp, st)) = star.filter(|&(_, st)| txt[st] != '/') {
                // The star takes one more character, never a `/`.
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
            ("*", "llama3.attacker.example/ns/evil:latest", true),
            // `*` and `?` never cross `/`: another registry or namespace.
            ("llama3*", "llama3.attacker.example/ns/evil:latest", false),
            ("llama3*", "llama3/evil", false),
            ("llama3*", "llama3:x/y", false),
            ("llama3?evil", "llama3/evil", false),
            ("*:latest", "evil.example/ns/m:latest", false),
            ("**", "a/b", false),
            ("meta-llama/*", "meta-llama/Llama-3-8B", true),
            ("meta-llama/*", "meta-llama/Llama-3/8B", false),
            ("meta-llama/*", "meta-llama/", true),
            ("*/*", "hf.co/model", true),
            ("*/*", "hf.co/ns/model", false),
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

    /// The definition, directly: exponential, for short strings only.
    fn reference(pat: &[char], txt: &[char]) -> bool {
        match pat.split_first() {
            None => txt.is_empty(),
            Some(('*', rest)) => (0..=txt.len())
                .take_while(|&n| n == 0 || txt[n - 1] != '/')
                .any(|n| reference(rest, &txt[n..])),
            Some((&c, rest)) => match txt.split_first() {
                Some((&t, tail)) => (c == t || (c == '?' && t != '/')) && reference(rest, tail),
                None => false,
            },
        }
    }

    #[test]
    fn matching_agrees_with_the_definition_on_every_short_pair() {
        let alphabet = ['a', 'b', '/', '*', '?'];
        let words = |n: usize, letters: &[char]| -> Vec<String> {
            let mut out = vec![String::new()];
            for _ in 0..n {
                let longer: Vec<String> = out
                    .iter()
                    .filter(|w| w.chars().count() == out.last().map_or(0, |l| l.chars().count()))
                    .flat_map(|w| letters.iter().map(move |c| format!("{w}{c}")))
                    .collect();
                out.extend(longer);
            }
            out
        };
        let patterns = words(4, &alphabet);
        let texts = words(5, &alphabet[..3]);
        for p in patterns
            .iter()
            .filter(|p| !p.is_empty() && p.as_str() != "*")
        {
            let glob = Glob::parse(p).expect("pattern");
            let pc: Vec<char> = p.chars().collect();
            for t in &texts {
                let tc: Vec<char> = t.chars().collect();
                assert_eq!(glob.matches(t), reference(&pc, &tc), "{p} vs {t}");
            }
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
