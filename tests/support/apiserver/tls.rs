//! HTTPS for the double: a CA of its own and a serving certificate for the address it
//! listens on, as a cluster's API server has; clients trust the CA, as pods trust the
//! `ca.crt` of their ServiceAccount.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

pub struct Certificates {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    server_der: Vec<u8>,
    server_key_der: Vec<u8>,
}

impl Certificates {
    /// A fresh CA and a certificate it signed for `address`, `127.0.0.1`, `localhost` and the
    /// in-cluster names of the API server.
    pub fn issue(address: IpAddr) -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("empty SANs are valid");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "schism-test-apiserver-ca");
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign the CA");

        let names = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ];
        let mut server = CertificateParams::new(names.map(String::from).to_vec())
            .expect("the DNS names are valid");
        server
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        server.subject_alt_names.push(SanType::IpAddress(address));
        server
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        let server_key = KeyPair::generate().expect("generate the serving key");
        let server_cert = server
            .signed_by(&server_key, &ca_cert, &ca_key)
            .expect("sign the serving certificate");
        Self {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().to_vec(),
            server_der: server_cert.der().to_vec(),
            server_key_der: server_key.serialize_der(),
        }
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.server_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone())),
            )
            .expect("the serving certificate and key match");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }
}
