//! The ids of routes, clients and keys, each its own type: a grant's client
//! and route, or a key's id and its client's, cannot be swapped, and every
//! id in the model was parsed by the one rule below (the declarative file,
//! the database's `gk_id` domain and the CLI share it).
//!
//! An id is an `Arc<str>` inside, so cloning one on the request path is a
//! reference count, never an allocation. It reads as a `str` (`Deref`,
//! `Display`, `Debug`, `Borrow<str>` for maps looked up by text) and
//! (de)serialises as a plain string. There is no unchecked constructor.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

/// Route, client and key ids: `[A-Za-z0-9._-]{1,64}` (UUIDs fit). They are
/// what `X-Auth-Route-ID`, `X-Auth-Client-ID` and `X-Auth-Key-ID` carry.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A text `valid_id` refuses. The message completes "`id`: …".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 64 characters of A-Z a-z 0-9 . _ -")]
pub struct InvalidId;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The id, if `s` follows the id rule (`valid_id`).
            pub fn parse(s: &str) -> Result<$name, InvalidId> {
                match valid_id(s) {
                    true => Ok($name(Arc::from(s))),
                    false => Err(InvalidId),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<$name, InvalidId> {
                $name::parse(s)
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // `Hash`, `Eq` and `Ord` are those of the text, as `Borrow` requires.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&*self.0, f)
            }
        }

        /// Like the text's: `"team-a"`.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let text = String::deserialize(d)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type! {
    /// A route's id (`X-Auth-Route-ID`).
    RouteId
}

id_type! {
    /// A client's id (`X-Auth-Client-ID`).
    ClientId
}

id_type! {
    /// An API key's id (`X-Auth-Key-ID`): a generated key's public part, or
    /// the name a file or an import gave it. Never the key itself.
    KeyId
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[test]
    fn ids_follow_the_file_format() {
        assert!(valid_id("team-a"));
        assert!(valid_id("6f1c2a7e-8a4b-4c1d-9e2f-0a1b2c3d4e5f"));
        assert!(valid_id(&"a".repeat(64)));
        assert!(!valid_id(""));
        assert!(!valid_id("team a"));
        assert!(!valid_id(&"a".repeat(65)));
    }

    #[test]
    fn invalid_ids_are_refused_with_the_rule_in_words() {
        for bad in ["", "team a", "ä", "a/b", "a\0", &"a".repeat(65)] {
            assert_eq!(RouteId::parse(bad), Err(InvalidId), "{bad:?}");
            assert_eq!(ClientId::parse(bad), Err(InvalidId), "{bad:?}");
            assert_eq!(bad.parse::<KeyId>(), Err(InvalidId), "{bad:?}");
        }
        assert_eq!(
            InvalidId.to_string(),
            "must be 1 to 64 characters of A-Z a-z 0-9 . _ -"
        );
    }

    #[test]
    fn an_id_reads_prints_and_hashes_as_its_text() {
        let id = ClientId::parse("team-a").unwrap();
        assert_eq!(&*id, "team-a");
        assert_eq!(id.as_str(), "team-a");
        assert_eq!(id.to_string(), "team-a");
        assert_eq!(format!("{id:>8}|{id:?}"), "  team-a|\"team-a\"");
        let map = HashMap::from([(id.clone(), 1)]);
        assert_eq!(map.get("team-a"), Some(&1));
        assert_eq!(
            std::mem::size_of::<ClientId>(),
            std::mem::size_of::<Arc<str>>()
        );
    }

    #[test]
    fn a_clone_shares_the_text() {
        let id = KeyId::parse("k1").unwrap();
        let copy = id.clone();
        assert!(std::ptr::eq(id.as_str(), copy.as_str()));
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Grant {
        client: ClientId,
        route: RouteId,
    }

    #[test]
    fn ids_serialise_as_plain_strings_and_deserialise_by_the_rule() {
        let g = Grant {
            client: ClientId::parse("team-a").unwrap(),
            route: RouteId::parse("chat").unwrap(),
        };
        let text = serde_json::to_string(&g).unwrap();
        assert_eq!(text, r#"{"client":"team-a","route":"chat"}"#);
        assert_eq!(serde_json::from_str::<Grant>(&text).unwrap(), g);
        let bad = serde_json::from_str::<Grant>(r#"{"client":"team a","route":"chat"}"#);
        let e = bad.unwrap_err().to_string();
        assert!(e.contains("must be 1 to 64 characters"), "{e}");
        let toml_text = toml::to_string(&g).unwrap();
        assert_eq!(toml_text, "client = \"team-a\"\nroute = \"chat\"\n");
        assert_eq!(toml::from_str::<Grant>(&toml_text).unwrap(), g);
    }
}
