//! What the node's flags point at: the cluster key, the client tokens and
//! the TLS certificates and keys, read once at start, and the host name
//! that `--id-from-ordinal` reads. A file that cannot be read, or holds
//! the wrong thing, stops the node at start with an error naming its flag.

use std::path::Path;

use crate::auth::tokens::ApiTokens;
use crate::auth::ClusterKey;
use crate::config::{Config, ConfigError, TlsFiles};
use crate::http::tls::{self, Tls};

/// The contents of the files named by the flags.
pub struct Credentials {
    /// The cluster's shared secret, with `--cluster-key-file`.
    pub cluster_key: Option<ClusterKey>,
    /// The client tokens, with `--api-tokens-file`.
    pub api_tokens: Option<ApiTokens>,
    /// TLS on the API port and in calls to other nodes.
    pub tls: Option<Tls>,
}

/// Reads every file the configuration names.
pub fn load(config: &Config) -> Result<Credentials, ConfigError> {
    let cluster_key = config
        .cluster_key_file
        .as_deref()
        .map(|path| read("--cluster-key-file", path, ClusterKey::load))
        .transpose()?;
    let api_tokens = config
        .api_tokens_file
        .as_deref()
        .map(|path| read("--api-tokens-file", path, ApiTokens::load))
        .transpose()?;
    let tls = config.tls_files.as_ref().map(load_tls).transpose()?;
    Ok(Credentials {
        cluster_key,
        api_tokens,
        tls,
    })
}

/// The certificate chain, its key and the CA, each error naming its flag.
fn load_tls(files: &TlsFiles) -> Result<Tls, ConfigError> {
    let chain = read("--tls-cert", &files.cert, tls::read_chain)?;
    let key = read("--tls-key", &files.key, tls::read_key)?;
    let client = read("--tls-ca", &files.ca, tls::read_ca)?;
    let server = tls::server_config(chain, key).map_err(|m| ConfigError::new("--tls-key", m))?;
    Ok(Tls { server, client })
}

/// The file of `flag` at `path`, read by `load`.
fn read<T>(
    flag: &str,
    path: &Path,
    load: impl Fn(&Path) -> Result<T, String>,
) -> Result<T, ConfigError> {
    load(path).map_err(|m| ConfigError::refused(flag, &m, &path.display().to_string()))
}

/// The process's environment variable `name`, as the flags read it; for
/// `HOSTNAME` when unset, the kernel's host name (Docker and Kubernetes
/// set `HOSTNAME` to the container's host name).
pub fn environment(name: &str) -> Option<String> {
    let value = std::env::var(name).ok().filter(|v| !v.is_empty());
    if value.is_none() && name == "HOSTNAME" {
        return Some(kernel_host_name());
    }
    value
}

fn kernel_host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
