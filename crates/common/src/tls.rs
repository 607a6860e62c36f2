//! The client side of TLS, as the node (calling other nodes) and the CLI
//! (`--cacert`) both build it: rustls with the `ring` provider, trusting
//! the certificates of one PEM file (the cluster's CA) and nothing else.
//!
//! Bytes in, configurations out: reading the files is the caller's job.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// The crypto provider of every TLS configuration here: `ring`, which
/// builds into a static binary (rustls' default, aws-lc-rs, is left out).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM text, in order; an error when it holds none
/// or one that does not parse.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file ({e})"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_string());
    }
    Ok(certs)
}

/// A client configuration that trusts the certificates of `ca_pem` alone
/// (each one a trust anchor), speaking HTTP/1.1.
pub fn client_config(ca_pem: &[u8]) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem)? {
        roots
            .add(cert)
            .map_err(|e| format!("holds a certificate that cannot be a trust anchor ({e})"))?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused() {
        assert!(client_config(b"")
            .unwrap_err()
            .contains("no PEM certificate"));
        assert!(client_config(b"hello\n").is_err());
        let garbled = b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(client_config(garbled).is_err());
    }
}
