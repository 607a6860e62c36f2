//! Client tokens (`--api-tokens-file`): a file of lines `TOKEN read` or
//! `TOKEN write` (blank lines and `#` comments ignored). With tokens, the
//! data endpoints (`/store/`, `/mget`, `/keys`) take
//! `Authorization: Bearer TOKEN`: a read token reads, a write token also
//! writes. Tokens are kept as their SHA-256 digests and looked up by
//! digest, so that no comparison runs over the secret itself.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Read,
    Write,
}

/// The tokens of `--api-tokens-file`.
#[derive(Clone, Default)]
pub struct ApiTokens {
    by_digest: HashMap<[u8; 32], Role>,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiTokens({} tokens)", self.by_digest.len())
    }
}

/// What is wrong with the token a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoToken {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header that is not `Bearer TOKEN`.
    NotBearer,
    /// A token this node does not know.
    Unknown,
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token, or one this node does not know (401).
    Unauthenticated(NoToken),
    /// A read token for a write (403).
    ReadOnly,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl ApiTokens {
    /// Reads the file at `path`; an error names the file and the line.
    pub fn load(path: &Path) -> Result<ApiTokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        ApiTokens::parse(&text).map_err(|(line, e)| format!("{}:{line}: {e}", path.display()))
    }

    /// Reads the lines of a tokens file; an error gives the line number.
    pub fn parse(text: &str) -> Result<ApiTokens, (usize, String)> {
        let mut tokens = ApiTokens::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let role = match fields.as_slice() {
                [_, "read"] => Role::Read,
                [_, "write"] => Role::Write,
                _ => return Err((i + 1, "expected `TOKEN read` or `TOKEN write`".to_string())),
            };
            let token = fields[0];
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err((i + 1, "a token is printable ASCII".to_string()));
            }
            if tokens.by_digest.insert(digest(token), role).is_some() {
                return Err((i + 1, "this token is listed twice".to_string()));
            }
        }
        if tokens.by_digest.is_empty() {
            return Err((0, "the file lists no token".to_string()));
        }
        Ok(tokens)
    }

    /// Whether the `Authorization` header `authorization` allows the
    /// request (a write when `write`).
    pub fn allow(&self, authorization: Option<&str>, write: bool) -> Result<Role, Denied> {
        let Some(value) = authorization else {
            return Err(Denied::Unauthenticated(NoToken::Missing));
        };
        let token = value
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(Denied::Unauthenticated(NoToken::NotBearer))?;
        match self.by_digest.get(&digest(token)) {
            None => Err(Denied::Unauthenticated(NoToken::Unknown)),
            Some(Role::Read) if write => Err(Denied::ReadOnly),
            Some(role) => Ok(*role),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tokens_file_is_read_and_bad_lines_are_named() {
        let t = ApiTokens::parse("# ops\n\nreader read\n  writer   write \n").unwrap();
        assert_eq!(t.allow(Some("Bearer reader"), false), Ok(Role::Read));
        assert_eq!(t.allow(Some("bearer writer"), true), Ok(Role::Write));
        assert_eq!(t.allow(Some("Bearer reader"), true), Err(Denied::ReadOnly));
        assert!(matches!(
            t.allow(Some("Bearer nobody"), false),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            t.allow(Some("Basic reader"), false),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            t.allow(None, false),
            Err(Denied::Unauthenticated(_))
        ));
        assert_eq!(ApiTokens::parse("a read\nb admin\n").unwrap_err().0, 2);
        assert_eq!(ApiTokens::parse("a read\na write\n").unwrap_err().0, 2);
        assert_eq!(ApiTokens::parse("lonely\n").unwrap_err().0, 1);
        assert!(ApiTokens::parse("# nothing\n").is_err());
    }
}
