//! Certificates for clusters that run over TLS: a certificate authority of
//! the tests' own, made fresh for each test process, and a certificate it
//! signs for `127.0.0.1` and `localhost` that every node of a test cluster
//! serves (they all listen on loopback). Files in a temporary directory,
//! as a node reads them with `--tls-cert`, `--tls-key` and `--tls-ca`.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A CA and one node certificate it signed, as PEM files.
pub struct TestCa {
    /// The CA's certificate: `--tls-ca`, the CLI's `--cacert`.
    pub ca: PathBuf,
    /// The node certificate: `--tls-cert`.
    pub cert: PathBuf,
    /// Its private key: `--tls-key`.
    pub key: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

impl TestCa {
    /// The CA of this test process, made on first use.
    pub fn shared() -> &'static TestCa {
        static CA: OnceLock<TestCa> = OnceLock::new();
        CA.get_or_init(|| TestCa::new("shared"))
    }

    /// A CA of its own (one that nodes of the shared CA do not trust), in
    /// a directory named after `what`.
    pub fn new(what: &str) -> TestCa {
        let dir = crate::names::temp_dir(&format!("tls-{what}"));
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("treecache test CA ({what})"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("a CA certificate");

        let node_key = KeyPair::generate().expect("a node key");
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let mut node_params = CertificateParams::new(names).expect("node parameters");
        node_params
            .distinguished_name
            .push(DnType::CommonName, "treecache test node");
        let node_cert = node_params
            .signed_by(&node_key, &ca_cert, &ca_key)
            .expect("a node certificate");

        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write a PEM file");
            path
        };
        let ca_pem = ca_cert.pem();
        let client = treecache_common::tls::client_config(ca_pem.as_bytes())
            .expect("a client configuration trusting the test CA");
        TestCa {
            ca: write("ca.pem", ca_pem),
            cert: write("node.pem", node_cert.pem()),
            key: write("node-key.pem", node_key.serialize_pem()),
            client,
        }
    }

    /// A client configuration that trusts this CA alone.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client.clone()
    }

    /// The node flags that make a node serve and call over TLS.
    pub fn node_args(&self) -> Vec<String> {
        let path = |p: &PathBuf| p.display().to_string();
        vec![
            "--tls-cert".into(),
            path(&self.cert),
            "--tls-key".into(),
            path(&self.key),
            "--tls-ca".into(),
            path(&self.ca),
        ]
    }
}
