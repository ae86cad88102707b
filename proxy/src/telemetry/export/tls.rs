//! TLS for the OTLP exporters: tonic's TLS settings for OTLP/gRPC and a rustls
//! connector for OTLP/HTTP, both from the configured CA and client certificate
//! files.

use std::sync::Arc;

use meshtrace_config::ResolvedExport;
use rustls::pki_types::pem::PemObject;

use super::ExportError;

/// TLS for OTLP/gRPC: on for `https://` endpoints or when files are given.
pub(super) fn tonic_tls(
    settings: &ResolvedExport,
    endpoint: &str,
) -> Result<Option<tonic::transport::ClientTlsConfig>, ExportError> {
    let https = endpoint.starts_with("https://");
    if !https && settings.ca_file.is_none() && settings.cert_file.is_none() {
        return Ok(None);
    }
    let mut tls = tonic::transport::ClientTlsConfig::new();
    match &settings.ca_file {
        Some(ca) => {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        None => tls = tls.with_enabled_roots(),
    }
    if let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            read(cert)?,
            read(key)?,
        ));
    }
    Ok(Some(tls))
}

/// The OTLP/HTTP connector: plain HTTP, or rustls with the configured CA (else the
/// system's roots, else the web PKI roots) and an optional client certificate.
pub(super) fn https_connector(
    settings: &ResolvedExport,
) -> Result<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    ExportError,
> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ExportError::Build(format!("tls: {e}")))?;
    let builder = match &settings.ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = read(ca)?;
            for cert in <rustls::pki_types::CertificateDer<'_> as PemObject>::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| ExportError::Build(format!("tls ca_file: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ExportError::Build(format!("tls ca_file: {e}")))?;
            }
            builder.with_root_certificates(roots)
        }
        None => {
            use hyper_rustls::ConfigBuilderExt;
            match builder.clone().with_native_roots() {
                Ok(native) => native,
                Err(_) => builder.with_webpki_roots(),
            }
        }
    };
    let config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let certs =
                <rustls::pki_types::CertificateDer<'_> as PemObject>::pem_slice_iter(&read(cert)?)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ExportError::Build(format!("tls cert_file: {e}")))?;
            let key =
                <rustls::pki_types::PrivateKeyDer<'_> as PemObject>::from_pem_slice(&read(key)?)
                    .map_err(|e| ExportError::Build(format!("tls key_file: {e}")))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| ExportError::Build(format!("tls: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build())
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ExportError> {
    std::fs::read(path).map_err(|error| ExportError::Tls {
        path: path.display().to_string(),
        error,
    })
}
