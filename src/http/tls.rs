//! A node's TLS (`--tls-cert`, `--tls-key`, `--tls-ca`): the server side,
//! which the HTTP server (`server`) terminates on the API port, and the
//! client side, with which the node calls other nodes over HTTPS, trusting
//! the cluster's CA alone. The whole cluster speaks TLS or none of it does,
//! so a node has both sides or neither.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ServerConfig};

/// Both sides of a node's TLS.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The API port's: this node's certificate chain and key.
    pub server: Arc<ServerConfig>,
    /// Calls to other nodes: their certificates must chain to the CA.
    pub client: Arc<ClientConfig>,
}

/// A certificate chain file (PEM), the node's certificate first.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    treecache_common::tls::certificates(&read(path)?)
}

/// A private key file (PEM: PKCS8, PKCS1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(&read(path)?)
        .map_err(|e| format!("holds no PEM private key ({e})"))
}

/// The client side: the certificates of the CA file (PEM) alone are trusted.
pub fn read_ca(path: &Path) -> Result<Arc<ClientConfig>, String> {
    treecache_common::tls::client_config(&read(path)?)
}

/// The server side from a chain and its key; an error when the key is not
/// the certificate's.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(treecache_common::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("cannot serve the certificate of --tls-cert ({e})"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_missing_or_not_pem_are_named() {
        let missing = Path::new("/nonexistent/node.pem");
        assert!(read_chain(missing)
            .unwrap_err()
            .contains("/nonexistent/node.pem"));
        assert!(read_key(missing).is_err());
        assert!(read_ca(missing).is_err());
        let dir = std::env::temp_dir().join(format!("treecache-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("text.pem");
        std::fs::write(&text, "not a certificate\n").unwrap();
        assert!(read_chain(&text)
            .unwrap_err()
            .contains("no PEM certificate"));
        assert!(read_key(&text).unwrap_err().contains("no PEM private key"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
