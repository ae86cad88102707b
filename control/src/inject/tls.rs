//! The injector's certificate, reloaded when its files change: cert-manager
//! (or the chart's secret, re-rendered on upgrade) rotates the mounted files in
//! place, and the API server must see the new certificate without a restart.
//!
//! The files are read every [`RELOAD_INTERVAL`]; a pair that changed and parses
//! replaces the served config for new connections. A pair that does not parse
//! (a rotation seen half-written) is logged and the previous one kept: the next
//! read picks up the complete pair.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// How often the files are compared with what is served.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// The served certificate and where it comes from.
pub struct ReloadingTls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Current>,
}

struct Current {
    files: (Vec<u8>, Vec<u8>),
    acceptor: TlsAcceptor,
}

// === impl ReloadingTls ===

impl ReloadingTls {
    /// Loads the pair; an unreadable or invalid pair is an error at start.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Arc<Self>, String> {
        let files = read(&cert, &key)?;
        let acceptor = acceptor(&files.0, &files.1)
            .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))?;
        Ok(Arc::new(Self {
            cert,
            key,
            current: RwLock::new(Current { files, acceptor }),
        }))
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        match self.current.read() {
            Ok(c) => c.acceptor.clone(),
            Err(poisoned) => poisoned.into_inner().acceptor.clone(),
        }
    }

    /// Reads the files; if they changed and parse, serves them. `Ok(true)`: a
    /// new certificate is served.
    pub fn reload(&self) -> Result<bool, String> {
        let files = read(&self.cert, &self.key)?;
        let same = match self.current.read() {
            Ok(c) => c.files == files,
            Err(poisoned) => poisoned.into_inner().files == files,
        };
        if same {
            return Ok(false);
        }
        let acceptor = acceptor(&files.0, &files.1)?;
        let mut current = match self.current.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = Current { files, acceptor };
        Ok(true)
    }

    /// Reloads every [`RELOAD_INTERVAL`] until the task is dropped.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.reload() {
                Ok(true) => {
                    tracing::info!(cert = %self.cert.display(), "injector certificate reloaded")
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    "injector certificate not reloaded, the previous one is kept: {e}"
                ),
            }
        }
    }
}

impl std::fmt::Debug for ReloadingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn read(cert: &PathBuf, key: &PathBuf) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: cannot read: {e}", p.display()));
    Ok((read(cert)?, read(key)?))
}

/// A rustls acceptor (ring, TLS 1.2+) for a PEM chain and key, offering h2 and
/// HTTP/1.1 (the API server speaks either).
fn acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the certificate file".into());
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| format!("the key is not PEM: {e}"))?
        .ok_or("no private key in the key file")?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn a_rotated_pair_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "one");
        let tls = ReloadingTls::load(cert.clone(), key.clone()).unwrap();
        assert!(!tls.reload().unwrap(), "unchanged files are not reloaded");
        pair(dir.path(), "two");
        assert!(tls.reload().unwrap());
        std::fs::write(&key, "half-written").unwrap();
        assert!(tls.reload().is_err());
        let served = tls.current.read().unwrap().files.1.clone();
        assert_ne!(served, b"half-written".to_vec(), "the previous pair stays");
    }

    #[test]
    fn a_missing_key_is_an_error_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = pair(dir.path(), "one");
        let err = ReloadingTls::load(cert, dir.path().join("nope")).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }
}
