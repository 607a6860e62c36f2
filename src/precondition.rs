//! Versions as entity tags, and the conditions of conditional requests.
//!
//! A key's ETag is the version of the write that produced its value, quoted:
//! `"17"`. A client sends tags back in three headers:
//! - `If-None-Match` on a GET: 304 Not Modified when the key's version is one
//!   of them (or, for `*`, when the key exists);
//! - `If-Match` on a PUT or DELETE: the write happens only if the key exists
//!   and its version is one of them (`*`: only if it exists), else 412;
//! - `If-None-Match` on a PUT or DELETE: the write happens only if the key
//!   does not exist (`*`), or its version is none of them, else 412.
//!
//! Tags are compared by their version, weak (`W/"17"`) or not: a version
//! names one value. A tag that is not a version (`"abc"`), or anything else
//! a header holds, matches nothing: as HTTP servers do, a condition is never
//! refused for its form, so `If-Match: "abc"` is a 412 and `If-None-Match:
//! "abc"` holds. The root checks a write's condition under the key's write
//! lock, so that a compare-and-set is atomic (`node::write`).

pub const IF_MATCH: &str = "If-Match";
pub const IF_NONE_MATCH: &str = "If-None-Match";

/// The ETag of `version`.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// What an `If-Match` or `If-None-Match` header names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tags {
    /// `*`: any version, as long as the key exists.
    Any,
    /// These versions (tags that are not versions are left out: they match nothing).
    Versions(Vec<u64>),
}

impl Tags {
    /// Reads the value of an `If-Match` or `If-None-Match` header: `*`, or
    /// tags separated by commas (`"17", W/"18"`; a bare `17` is taken for
    /// `"17"`). Nothing is refused: what does not name a version matches
    /// nothing.
    pub fn parse(value: &str) -> Tags {
        if value.trim() == "*" {
            return Tags::Any;
        }
        let versions = value
            .split(',')
            .filter_map(|tag| {
                let tag = tag.trim();
                let tag = tag.strip_prefix("W/").unwrap_or(tag);
                let opaque = tag
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .unwrap_or(tag);
                version_of(opaque)
            })
            .collect();
        Tags::Versions(versions)
    }

    /// Whether a key at `current` (`None`: absent) matches.
    pub fn matches(&self, current: Option<u64>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Tags::Any, Some(_)) => true,
            (Tags::Versions(versions), Some(v)) => versions.contains(&v),
        }
    }

    /// The header value that names these tags (`""`, a tag that names no
    /// version, for none).
    pub fn header_value(&self) -> String {
        match self {
            Tags::Any => "*".to_string(),
            Tags::Versions(versions) if versions.is_empty() => "\"\"".to_string(),
            Tags::Versions(versions) => versions
                .iter()
                .map(|&v| etag(v))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The header with these tags, as an error names it.
    fn named(&self, header: &str) -> String {
        match self {
            Tags::Versions(versions) if versions.is_empty() => {
                format!("{header}, which names no version")
            }
            _ => format!("{header}: {}", self.header_value()),
        }
    }
}

/// A decimal version without sign or leading zeros.
fn version_of(opaque: &str) -> Option<u64> {
    let plain = !opaque.is_empty()
        && opaque.bytes().all(|b| b.is_ascii_digit())
        && (opaque == "0" || !opaque.starts_with('0'));
    plain.then(|| opaque.parse().ok()).flatten()
}

/// A condition that does not hold (412).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmet {
    /// The header of the condition, as named to the client (`If-Match: "3"`).
    pub condition: String,
    /// `If-None-Match` named the version (rather than `If-Match` not naming it).
    pub matched: bool,
    /// The key's version when checked; `None`: it does not exist.
    pub current: Option<u64>,
}

/// The condition of a PUT or DELETE on the key's current version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub if_match: Option<Tags>,
    pub if_none_match: Option<Tags>,
}

impl Condition {
    /// The condition of a write with these headers; `None` without either.
    pub fn parse(if_match: Option<&str>, if_none_match: Option<&str>) -> Option<Condition> {
        let condition = Condition {
            if_match: if_match.map(Tags::parse),
            if_none_match: if_none_match.map(Tags::parse),
        };
        Some(condition).filter(|c| c.if_match.is_some() || c.if_none_match.is_some())
    }

    /// Whether a write of a key now at `current` (`None`: absent) may
    /// happen; if not, which part of the condition does not hold.
    pub fn check(&self, current: Option<u64>) -> Result<(), Unmet> {
        let unmet = |tags: &Tags, header, matched| Unmet {
            condition: tags.named(header),
            matched,
            current,
        };
        if let Some(tags) = &self.if_match {
            if !tags.matches(current) {
                return Err(unmet(tags, IF_MATCH, false));
            }
        }
        if let Some(tags) = &self.if_none_match {
            if tags.matches(current) {
                return Err(unmet(tags, IF_NONE_MATCH, true));
            }
        }
        Ok(())
    }

    /// The headers that carry this condition, for a write passed on to the root.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if let Some(tags) = &self.if_match {
            headers.push((IF_MATCH, tags.header_value()));
        }
        if let Some(tags) = &self.if_none_match {
            headers.push((IF_NONE_MATCH, tags.header_value()));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(v: &[u64]) -> Tags {
        Tags::Versions(v.to_vec())
    }

    #[test]
    fn tags_are_star_or_a_list_of_versions_and_anything_else_matches_nothing() {
        assert_eq!(Tags::parse("*"), Tags::Any);
        assert_eq!(Tags::parse(" * "), Tags::Any);
        assert_eq!(Tags::parse(" \"7\" "), versions(&[7]));
        assert_eq!(Tags::parse("\"7\", W/\"8\",\"9\""), versions(&[7, 8, 9]));
        assert_eq!(Tags::parse("\t\"7\" ,\t8 "), versions(&[7, 8]), "a bare 8");
        assert_eq!(Tags::parse("\"0\""), versions(&[0]));
        for nothing in [
            "",
            "\"abc\"",
            "\"07\"",
            "\"-1\"",
            "\"\"",
            "\"7",
            "\"7\" \"8\"",
            "**",
            "\"1\", *",
            "\"99999999999999999999999\"",
        ] {
            let tags = Tags::parse(nothing);
            let expected = if nothing == "\"1\", *" {
                versions(&[1])
            } else {
                versions(&[])
            };
            assert_eq!(tags, expected, "{nothing:?}");
            assert!(!tags.matches(Some(7)) && !tags.matches(None), "{nothing:?}");
        }
    }

    #[test]
    fn tags_round_trip_through_their_header_value() {
        for value in ["*", "\"1\"", "\"1\", \"22\"", "\"\""] {
            assert_eq!(Tags::parse(value).header_value(), value);
        }
        assert_eq!(Tags::parse("nonsense").header_value(), "\"\"");
        assert_eq!(etag(42), "\"42\"");
        assert_eq!(Tags::parse(&etag(42)), versions(&[42]));
    }

    #[test]
    fn a_condition_holds_as_the_headers_say() {
        let if_match = |v| Condition::parse(Some(v), None).unwrap();
        let if_none_match = |v| Condition::parse(None, Some(v)).unwrap();
        assert_eq!(Condition::parse(None, None), None);
        assert!(if_match("\"5\"").check(Some(5)).is_ok());
        assert!(if_match("\"5\"").check(Some(6)).is_err());
        assert!(if_match("\"5\"").check(None).is_err());
        assert!(if_match("*").check(Some(6)).is_ok());
        assert!(if_match("*").check(None).is_err());
        assert!(if_match("nonsense").check(Some(6)).is_err());
        assert!(if_none_match("*").check(None).is_ok());
        assert!(if_none_match("*").check(Some(1)).is_err());
        assert!(if_none_match("\"1\"").check(Some(2)).is_ok());
        assert!(if_none_match("\"1\"").check(Some(1)).is_err());
        assert!(if_none_match("nonsense").check(Some(1)).is_ok());
        // As the client reads it.
        let said = |unmet| {
            let key = "k".to_string();
            crate::node::failed::Error::from(crate::node::NodeError::Precondition { key, unmet })
                .to_string()
        };
        let why = said(if_match("\"5\"").check(Some(6)).unwrap_err());
        assert!(why.contains("If-Match: \"5\": its version is 6"), "{why}");
        let why = said(if_match("nonsense").check(None).unwrap_err());
        assert!(why.contains("names no version: it does not exist"), "{why}");
        let both = Condition::parse(Some("\"5\""), Some("\"6\"")).unwrap();
        assert_eq!(
            both.headers(),
            [
                (IF_MATCH, "\"5\"".to_string()),
                (IF_NONE_MATCH, "\"6\"".to_string())
            ]
        );
    }
}
