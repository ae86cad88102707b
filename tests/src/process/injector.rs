//! Runs the real `meshtrace-control injector` behind a certificate signed by a
//! test CA, and talks to it as the API server does: HTTPS, verifying the
//! server against that CA only (the webhook's `caBundle`) under the Service's
//! DNS name, over HTTP/1.1 or HTTP/2.
//!
//! The server announces its address (`injector listening addr=…`) once it
//! listens; the certificate is loaded before that, so it is ready then.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::binary::control_binary;
use super::{Group, Logs, Supervised};

/// The name the API server dials: the chart's Service in namespace `meshtrace`.
pub const SERVICE_NAME: &str = "meshtrace-injector.meshtrace.svc";
const READY_LIMIT: Duration = Duration::from_secs(20);

/// A CA and a serving certificate it signed for [`SERVICE_NAME`].
#[derive(Clone, Debug)]
pub struct TestCa {
    /// The CA certificate (what the webhook's caBundle holds).
    pub ca: CertificateDer<'static>,
    /// The serving certificate, PEM.
    pub cert_pem: String,
    /// Its key, PEM.
    pub key_pem: String,
}

// === impl TestCa ===

impl TestCa {
    /// A fresh CA and serving certificate.
    ///
    /// # Panics
    ///
    /// If rcgen fails (no randomness): test setup.
    pub fn new() -> Self {
        fn fail<T>(e: rcgen::Error) -> T {
            panic!("test CA: {e}")
        }
        let ca_key = rcgen::KeyPair::generate().unwrap_or_else(fail);
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(fail);
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "meshtrace test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap_or_else(fail);
        let key = rcgen::KeyPair::generate().unwrap_or_else(fail);
        let names = vec![SERVICE_NAME.to_string(), "localhost".to_string()];
        let leaf = rcgen::CertificateParams::new(names)
            .and_then(|p| p.signed_by(&key, &ca))
            .unwrap_or_else(fail);
        Self {
            ca: ca.der().clone(),
            cert_pem: leaf.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client config trusting this CA only, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca.clone())
            .unwrap_or_else(|e| panic!("trust the test CA: {e}"));
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("rustls client: {e}"))
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A running `meshtrace-control injector`; killed, its files removed, on drop.
#[derive(Debug)]
pub struct InjectorProcess {
    addr: SocketAddr,
    dir: PathBuf,
    ca: TestCa,
    process: Supervised,
}

// === impl InjectorProcess ===

impl InjectorProcess {
    /// Starts the injector with `config` (injector config YAML; `None`: no
    /// `--config`) and a fresh CA, its files in a scratch directory named after
    /// `name`.
    pub async fn start(name: &str, config: Option<&str>) -> Self {
        let dir = std::env::temp_dir().join(format!("meshtrace-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let ca = TestCa::new();
        write(&dir.join("tls.crt"), &ca.cert_pem);
        write(&dir.join("tls.key"), &ca.key_pem);
        let mut command = Command::new(control_binary().await);
        command
            .args(["injector", "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .env("NO_COLOR", "1");
        if let Some(config) = config {
            write(&dir.join("injector.yaml"), config);
            command.arg("--config").arg(dir.join("injector.yaml"));
        }
        let process = Supervised::spawn(
            "meshtrace-control injector",
            command,
            Logs::Capture,
            Group::Inherit,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        const PREFIX: &str = "injector listening addr=";
        let line = process
            .announced("its address", READY_LIMIT, |l| l.contains(PREFIX))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = line
            .split_once(PREFIX)
            .and_then(|(_, a)| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("cannot read the address from {line:?}"));
        Self {
            addr,
            dir,
            ca,
            process,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA its certificate chains to.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// Its captured log.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// A connection as the API server makes it: TLS verified against the
    /// test CA as [`SERVICE_NAME`]; HTTP/2 when `h2`, else HTTP/1.1.
    pub async fn connect(&self, h2: bool) -> Result<InjectorClient, String> {
        let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
        connect(self.addr, self.ca.client_config(alpn), h2).await
    }
}

impl Drop for InjectorProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTPS connection to an injector.
#[derive(Debug)]
pub enum InjectorClient {
    /// HTTP/1.1 (keep-alive).
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    /// HTTP/2.
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Connects to `addr` with `config`, verifying the server as [`SERVICE_NAME`].
pub async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    h2: bool,
) -> Result<InjectorClient, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(SERVICE_NAME).map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let io = TokioIo::new(tls);
    if h2 {
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        return Ok(InjectorClient::Http2(sender));
    }
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(InjectorClient::Http1(sender))
}

// === impl InjectorClient ===

impl InjectorClient {
    /// Sends `method path` with `body` (JSON when not empty); the status, the
    /// content type and the body.
    pub async fn send(
        &mut self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, String, Bytes), String> {
        let request = Request::builder()
            .method(method)
            .uri(format!("https://{SERVICE_NAME}{path}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = match self {
            Self::Http1(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(request).await
            }
            Self::Http2(s) => s.send_request(request).await,
        }
        .map_err(|e| e.to_string())?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, content_type, body))
    }
}

fn write(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
