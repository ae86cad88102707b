//! The TLS receiver's identity: a self-signed certificate for the names a test
//! dials (`localhost`, `127.0.0.1`), which is also the CA the client trusts.
//!
//! The handshake is tokio-rustls', run on each accepted connection by the
//! receiver's own accept loop (rather than tonic's server with
//! `ServerTlsConfig`), so that stopping the receiver closes its connections too.

use std::fmt;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// A self-signed certificate and its key. Clones present the same certificate,
/// so a receiver restarted with it is trusted by clients of the first one.
#[derive(Clone)]
pub struct SelfSignedCert {
    pem: String,
    der: CertificateDer<'static>,
    /// The PKCS#8 DER of the key.
    key: Vec<u8>,
}

// === impl SelfSignedCert ===

impl SelfSignedCert {
    /// A fresh certificate for `localhost` and `127.0.0.1`.
    ///
    /// # Panics
    ///
    /// If rcgen cannot generate a key (no randomness): test setup.
    pub fn localhost() -> Self {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let certified = rcgen::generate_simple_self_signed(names)
            .unwrap_or_else(|e| panic!("generate a self-signed certificate: {e}"));
        Self {
            pem: certified.cert.pem(),
            der: certified.cert.der().clone(),
            key: certified.signing_key.serialize_der(),
        }
    }

    /// The certificate in PEM: what a client must trust as its CA.
    pub fn ca_pem(&self) -> &str {
        &self.pem
    }

    /// A TLS acceptor presenting this certificate and offering `h2` by ALPN.
    ///
    /// # Panics
    ///
    /// If rustls refuses the key rcgen made: test setup.
    pub(super) fn acceptor(&self) -> TlsAcceptor {
        let provider = Arc::new(ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| {
                builder.with_no_client_auth().with_single_cert(
                    vec![self.der.clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone())),
                )
            })
            .unwrap_or_else(|e| panic!("a rustls server config for the OTLP receiver: {e}"));
        config.alpn_protocols = vec![b"h2".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }
}

impl fmt::Debug for SelfSignedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of test output.
        f.debug_struct("SelfSignedCert")
            .field("pem", &self.pem)
            .finish_non_exhaustive()
    }
}
