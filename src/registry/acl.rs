//! Who may touch the cluster's znodes. With `--zk-auth USER:PASSWORD` the
//! node authenticates each session with ZooKeeper's digest scheme
//! (`add_auth("digest", "USER:PASSWORD")`, before any registration, and
//! again after a reconnection: ZooKeeper keeps the identity per
//! connection), and every znode the cluster creates gets one ACL entry:
//! all rights for `digest:USER:base64(sha1(USER:PASSWORD))`, none for
//! anyone else. Without it, the znodes are open to all (with a warning at
//! start).
//!
//! SHA-1 comes from RustCrypto's `sha1`, the same family as the `sha2` and
//! `hmac` the cluster key uses (one `digest` trait for all three); the
//! digest scheme fixes SHA-1, which is not used for anything else here.

use sha1::{Digest, Sha1};
use zookeeper::{Acl, Permission};

use crate::config::ZkAuth;

/// The ACL of every znode the cluster creates.
pub fn for_cluster(auth: Option<&ZkAuth>) -> Vec<Acl> {
    match auth {
        Some(a) => vec![Acl::new(
            Permission::ALL,
            "digest",
            digest_id(&a.user, &a.password),
        )],
        None => Acl::open_unsafe().clone(),
    }
}

/// What `add_auth` sends for the digest scheme.
pub fn credentials(auth: &ZkAuth) -> Vec<u8> {
    format!("{}:{}", auth.user, auth.password).into_bytes()
}

/// The digest scheme's id of `user` with `password`:
/// `user:base64(sha1(user:password))`.
pub fn digest_id(user: &str, password: &str) -> String {
    let hash = Sha1::digest(format!("{user}:{password}").as_bytes());
    format!("{user}:{}", base64(&hash))
}

/// Standard base64, with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_the_usual_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }

    #[test]
    fn the_digest_id_is_zookeepers() {
        // What ZooKeeper 3.8's own generator prints: `java -cp ...
        // org.apache.zookeeper.server.auth.DigestAuthenticationProvider super:secret`.
        assert_eq!(
            digest_id("super", "secret"),
            "super:lK75jTNcA+U9vtVEw5vB51mj/w4="
        );
    }
}
