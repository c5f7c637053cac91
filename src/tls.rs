//! TLS on the public listener (`[server] tls_cert` / `tls_key`, PEM), served by rustls on
//! aws-lc-rs (the provider reqwest already brings). TLS 1.2 and 1.3 by default,
//! `tls_min_version = "1.3"` for 1.3 only. The certificate is read again on `SIGHUP`, so a
//! renewed one (Let's Encrypt, cert-manager) is served without a restart; a reload that fails
//! keeps the certificate in use and says why.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::RwLock;

/// The certificate in use, replaced whole on reload.
#[derive(Debug)]
pub struct Certificate {
    current: RwLock<Arc<CertifiedKey>>,
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
}

impl Certificate {
    /// Reads the PEM files again and serves them from the next handshake on.
    pub fn reload(&self) -> anyhow::Result<()> {
        let loaded = load(&self.cert, &self.key, &self.provider)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded);
        Ok(())
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }
}

fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("a PEM certificate chain in {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("a PEM private key in {}", key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .with_context(|| format!("the private key in {}", key.display()))?;
    let loaded = CertifiedKey::new(chain, signing);
    loaded.keys_match().context("the private key does not belong to the certificate")?;
    Ok(loaded)
}

/// The server's TLS configuration, and the certificate to reload on `SIGHUP`.
pub fn server_config(
    settings: &parla_config::ServerSettings,
) -> anyhow::Result<(rustls::ServerConfig, Arc<Certificate>)> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (cert, key) = (PathBuf::from(&settings.tls_cert), PathBuf::from(&settings.tls_key));
    let current = load(&cert, &key, &provider)?;
    let certificate =
        Arc::new(Certificate { current: RwLock::new(Arc::new(current)), cert, key, provider });
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.tls_min_version.as_str() {
        "1.3" => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut config = rustls::ServerConfig::builder_with_provider(certificate.provider.clone())
        .with_protocol_versions(versions)
        .context("TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    // HTTP/1.1 only: the widget's socket is a WebSocket upgrade.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, certificate))
}

/// Reloads `certificate` on every `SIGHUP`, until the runtime stops.
pub fn reload_on_hangup(certificate: Arc<Certificate>) {
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("SIGHUP cannot be watched: the TLS certificate is not reloaded");
            return;
        };
        while hangups.recv().await.is_some() {
            match certificate.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "TLS certificate not reloaded; the previous one is served")
                }
            }
        }
    });
}
