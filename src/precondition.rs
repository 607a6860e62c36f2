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
//! names one value. A well-formed tag that is not a version (`"abc"`) matches
//! nothing; a header that is not a list of tags, or `*`, is refused (400).
//! The root checks a write's condition under the key's write lock, so that a
//! compare-and-set is atomic (`node::write`).

use crate::input::Invalid;

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
    /// Reads the value of `header` (named in the error): `*`, or tags
    /// separated by commas, with spaces or tabs around them.
    pub fn parse(header: &str, value: &str) -> Result<Tags, Invalid> {
        let value = value.trim_matches(blank);
        if value == "*" {
            return Ok(Tags::Any);
        }
        let bad = || {
            Invalid::BadRequest(format!(
                "The {header} header must be * or a list of quoted entity tags such as \
                 \"17\", not {value:?}."
            ))
        };
        let mut versions = Vec::new();
        let mut rest = value;
        loop {
            let tag = rest.trim_start_matches(blank);
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            let inner = tag.strip_prefix('"').ok_or_else(bad)?;
            let end = inner.find('"').ok_or_else(bad)?;
            let opaque = &inner[..end];
            // The characters of an entity tag (RFC 9110), ASCII only.
            if !opaque
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
            {
                return Err(bad());
            }
            if let Some(version) = version_of(opaque) {
                versions.push(version);
            }
            rest = inner[end + 1..].trim_start_matches(blank);
            match rest.strip_prefix(',') {
                Some(more) => rest = more,
                None if rest.is_empty() => return Ok(Tags::Versions(versions)),
                None => return Err(bad()),
            }
        }
    }

    /// Whether a key at `current` (`None`: absent) matches.
    pub fn matches(&self, current: Option<u64>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Tags::Any, Some(_)) => true,
            (Tags::Versions(versions), Some(v)) => versions.contains(&v),
        }
    }

    /// The header value that names these tags.
    pub fn header_value(&self) -> String {
        match self {
            Tags::Any => "*".to_string(),
            Tags::Versions(versions) => versions
                .iter()
                .map(|&v| etag(v))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Space or tab: what may surround tags and commas.
fn blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// A decimal version without sign or leading zeros.
fn version_of(opaque: &str) -> Option<u64> {
    let plain = !opaque.is_empty()
        && opaque.bytes().all(|b| b.is_ascii_digit())
        && (opaque == "0" || !opaque.starts_with('0'));
    plain.then(|| opaque.parse().ok()).flatten()
}

/// The condition of a PUT or DELETE on the key's current version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub if_match: Option<Tags>,
    pub if_none_match: Option<Tags>,
}

impl Condition {
    /// The condition of a write with these headers; `None` without either.
    pub fn parse(
        if_match: Option<&str>,
        if_none_match: Option<&str>,
    ) -> Result<Option<Condition>, Invalid> {
        let condition = Condition {
            if_match: if_match.map(|v| Tags::parse(IF_MATCH, v)).transpose()?,
            if_none_match: if_none_match
                .map(|v| Tags::parse(IF_NONE_MATCH, v))
                .transpose()?,
        };
        Ok(Some(condition).filter(|c| c.if_match.is_some() || c.if_none_match.is_some()))
    }

    /// Whether a write of `key`, now at `current` (`None`: absent), may
    /// happen; if not, the sentence that says why.
    pub fn check(&self, key: &str, current: Option<u64>) -> Result<(), String> {
        let now = match current {
            Some(v) => format!("its version is {v}"),
            None => "it does not exist".to_string(),
        };
        if let Some(tags) = &self.if_match {
            if !tags.matches(current) {
                return Err(format!(
                    "The key {key:?} does not match If-Match: {}: {now}; nothing was changed.",
                    tags.header_value()
                ));
            }
        }
        if let Some(tags) = &self.if_none_match {
            if tags.matches(current) {
                return Err(format!(
                    "The key {key:?} matches If-None-Match: {}: {now}; nothing was changed.",
                    tags.header_value()
                ));
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

    fn tags(value: &str) -> Result<Tags, Invalid> {
        Tags::parse(IF_MATCH, value)
    }

    #[test]
    fn tags_are_star_or_a_list_of_quoted_versions() {
        assert_eq!(tags("*"), Ok(Tags::Any));
        assert_eq!(tags(" \"7\" "), Ok(Tags::Versions(vec![7])));
        assert_eq!(
            tags("\"7\", W/\"8\",\"9\""),
            Ok(Tags::Versions(vec![7, 8, 9]))
        );
        // Well-formed tags that are not versions match nothing.
        assert_eq!(
            tags("\"abc\", \"07\", \"\", \"-1\""),
            Ok(Tags::Versions(vec![]))
        );
        assert_eq!(tags("\"0\""), Ok(Tags::Versions(vec![0])));
        assert_eq!(tags("\t\"7\" ,\t\"8\" "), Ok(Tags::Versions(vec![7, 8])));
        for bad in [
            "",
            "7",
            "\"7",
            "\"7\" \"8\"",
            "\"7\",",
            "**",
            "W/7",
            "\"a b\"",
            "\"ü\"",
            "\"7\"\n",
            "* , \"7\"",
        ] {
            assert!(
                matches!(tags(bad), Err(Invalid::BadRequest(_))),
                "{bad:?} was taken"
            );
        }
    }

    #[test]
    fn tags_round_trip_through_their_header_value() {
        for value in ["*", "\"1\"", "\"1\", \"22\""] {
            assert_eq!(tags(value).unwrap().header_value(), value);
        }
        assert_eq!(etag(42), "\"42\"");
        assert_eq!(tags(&etag(42)), Ok(Tags::Versions(vec![42])));
    }

    #[test]
    fn a_condition_holds_as_the_headers_say() {
        let if_match = |v| Condition::parse(Some(v), None).unwrap().unwrap();
        let if_none_match = |v| Condition::parse(None, Some(v)).unwrap().unwrap();
        assert_eq!(Condition::parse(None, None), Ok(None));
        assert!(if_match("\"5\"").check("k", Some(5)).is_ok());
        assert!(if_match("\"5\"").check("k", Some(6)).is_err());
        assert!(if_match("\"5\"").check("k", None).is_err());
        assert!(if_match("*").check("k", Some(6)).is_ok());
        assert!(if_match("*").check("k", None).is_err());
        assert!(if_none_match("*").check("k", None).is_ok());
        assert!(if_none_match("*").check("k", Some(1)).is_err());
        assert!(if_none_match("\"1\"").check("k", Some(2)).is_ok());
        assert!(if_none_match("\"1\"").check("k", Some(1)).is_err());
        let why = if_match("\"5\"").check("k", Some(6)).unwrap_err();
        assert!(why.contains("its version is 6"), "{why}");
        let both = Condition::parse(Some("\"5\""), Some("\"6\""))
            .unwrap()
            .unwrap();
        assert_eq!(
            both.headers(),
            [
                (IF_MATCH, "\"5\"".to_string()),
                (IF_NONE_MATCH, "\"6\"".to_string())
            ]
        );
        assert!(Condition::parse(Some("nope"), None).is_err());
    }
}
