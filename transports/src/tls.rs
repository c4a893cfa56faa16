//! TLS settings with rustls (the `ring` provider, no OpenSSL), for any transport.
//!
//! [`ServerTls`] and [`ClientTls`] read PEM files and build rustls configurations; a
//! transport wraps its sockets with `tokio-rustls` using them. Nothing here knows the TCP
//! framing, so an HTTP/2 transport takes the same two types.
//!
//! ```no_run
//! use transports::tls::{ClientTls, ServerTls};
//! use transports::TcpTransport;
//!
//! # fn main() -> rpc_core::Result<()> {
//! // Provider: certificate and key; with a CA bundle, callers must show a certificate
//! // it signed (mutual TLS).
//! let server = TcpTransport::default().with_server_tls(
//!     ServerTls::from_pem_files("provider.crt", "provider.key")?.client_ca_file("clients-ca.crt")?,
//! )?;
//! // Consumer: the CA that signed the provider's certificate, and its own identity.
//! let client = TcpTransport::default().with_client_tls(
//!     ClientTls::new()
//!         .ca_file("ca.crt")?
//!         .identity_files("consumer.crt", "consumer.key")?,
//! )?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

use rpc_core::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Named explicitly rather than taken from the process default, which is ambiguous (and
    // panics) when another crate in the build enables a second provider.
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs_from(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|error| {
            Error::Config(format!(
                "cannot read certificates from {}: {error}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| Error::Config(format!("cannot read the {what}: {error}")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "the {what} holds no PEM certificate"
        )));
    }
    Ok(certs)
}

fn key_from(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| {
        Error::Config(format!(
            "cannot read a private key from {}: {error}",
            path.display()
        ))
    })
}

fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|error| Error::Config(format!("cannot read the private key: {error}")))
}

fn roots(certs: Vec<CertificateDer<'static>>, what: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|error| {
            Error::Config(format!("unusable certificate in the {what}: {error}"))
        })?;
    }
    Ok(roots)
}

/// A provider's TLS settings: its certificate chain and key, and optionally the CA
/// bundle its callers' certificates must chain to (mutual TLS).
#[derive(Clone, Debug)]
pub struct ServerTls {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    client_roots: Option<Arc<RootCertStore>>,
}

impl ServerTls {
    /// The certificate chain (leaf first) and private key in PEM files. Errors name the
    /// file that could not be read.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<ServerTls> {
        Ok(ServerTls {
            chain: certs_from(cert.as_ref())?,
            key: Arc::new(key_from(key.as_ref())?),
            client_roots: None,
        })
    }

    /// The same from PEM text.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<ServerTls> {
        Ok(ServerTls {
            chain: certs_from_pem(cert, "server certificate")?,
            key: Arc::new(key_from_pem(key)?),
            client_roots: None,
        })
    }

    /// Requires every caller to present a certificate signed by a CA in this PEM bundle
    /// (mutual TLS); callers without one, or with one from another CA, fail the handshake.
    pub fn client_ca_file(mut self, path: impl AsRef<Path>) -> Result<ServerTls> {
        let certs = certs_from(path.as_ref())?;
        self.client_roots = Some(Arc::new(roots(certs, "client CA bundle")?));
        Ok(self)
    }

    /// [`ServerTls::client_ca_file`] from PEM text.
    pub fn client_ca_pem(mut self, pem: &[u8]) -> Result<ServerTls> {
        let certs = certs_from_pem(pem, "client CA bundle")?;
        self.client_roots = Some(Arc::new(roots(certs, "client CA bundle")?));
        Ok(self)
    }

    /// True when callers must present a certificate.
    pub fn requires_client_cert(&self) -> bool {
        self.client_roots.is_some()
    }

    /// The rustls configuration these settings make (a key that does not match the
    /// certificate is refused here).
    pub fn rustls_config(&self) -> Result<Arc<ServerConfig>> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| Error::Config(format!("TLS protocol versions: {error}")))?;
        let builder = match &self.client_roots {
            Some(roots) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.clone(),
                    provider,
                )
                .build()
                .map_err(|error| Error::Config(format!("client certificate verifier: {error}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|error| Error::Config(format!("server certificate and key: {error}")))?;
        Ok(Arc::new(config))
    }
}

/// A consumer's TLS settings: the CA bundle that provider certificates must chain to, the
/// name to check them against (default: the host of the provider's address), and
/// optionally its own certificate for mutual TLS.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    roots: Vec<CertificateDer<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    server_name: Option<String>,
}

impl ClientTls {
    /// No trusted CA yet: add one with [`ClientTls::ca_file`] or [`ClientTls::ca_pem`].
    pub fn new() -> ClientTls {
        ClientTls::default()
    }

    /// Trusts the CAs in this PEM bundle for provider certificates.
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Result<ClientTls> {
        self.roots.extend(certs_from(path.as_ref())?);
        Ok(self)
    }

    /// [`ClientTls::ca_file`] from PEM text.
    pub fn ca_pem(mut self, pem: &[u8]) -> Result<ClientTls> {
        self.roots.extend(certs_from_pem(pem, "CA bundle")?);
        Ok(self)
    }

    /// The certificate (chain) and key this consumer shows providers that require one.
    pub fn identity_files(
        mut self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<ClientTls> {
        let chain = certs_from(cert.as_ref())?;
        self.identity = Some((chain, Arc::new(key_from(key.as_ref())?)));
        Ok(self)
    }

    /// [`ClientTls::identity_files`] from PEM text.
    pub fn identity_pem(mut self, cert: &[u8], key: &[u8]) -> Result<ClientTls> {
        let chain = certs_from_pem(cert, "client certificate")?;
        self.identity = Some((chain, Arc::new(key_from_pem(key)?)));
        Ok(self)
    }

    /// Checks every provider's certificate against `name` instead of the host in its
    /// address (providers listed by IP address whose certificates name a host).
    pub fn server_name(mut self, name: impl Into<String>) -> ClientTls {
        self.server_name = Some(name.into());
        self
    }

    /// The name provider certificates are checked against, when overridden.
    pub fn server_name_override(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The rustls configuration these settings make.
    pub fn rustls_config(&self) -> Result<Arc<ClientConfig>> {
        if self.roots.is_empty() {
            return Err(Error::Config(
                "client TLS has no trusted CA; call ClientTls::ca_file".into(),
            ));
        }
        let roots = roots(self.roots.clone(), "CA bundle")?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| Error::Config(format!("TLS protocol versions: {error}")))?
            .with_root_certificates(roots);
        let config = match &self.identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|error| Error::Config(format!("client certificate and key: {error}")))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// The name to check a provider's certificate against: the override, or the host of
/// `address` (`host:port`, `[v6]:port`).
pub fn server_name_for(address: &str, name: Option<&str>) -> Result<ServerName<'static>> {
    let host = match name {
        Some(name) => name,
        None => {
            let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
            host.trim_start_matches('[').trim_end_matches(']')
        }
    };
    ServerName::try_from(host.to_owned())
        .map_err(|error| Error::Config(format!("invalid TLS server name {host:?}: {error}")))
}

/// The TLS settings `config` gives a transport serving `protocol` (`tcp`, `http2`): a
/// server side when `protocols.PROTOCOL.ssl-enabled` (the `ssl.server-*` paths), a client
/// side when `ssl.client-trust-cert-collection-path` is set (with the `ssl.client-*`
/// identity and `ssl.server-name`). Errors name the missing key or the unreadable file.
pub(crate) fn from_config(
    config: &rpc_core::Config,
    protocol: &str,
) -> Result<(Option<ServerTls>, Option<ClientTls>)> {
    let ssl = &config.ssl;
    let mut server = None;
    if config.protocol(protocol).ssl_enabled == Some(true) {
        let missing = |key: &str| {
            Error::Config(format!(
                "protocols.{protocol}.ssl-enabled is true but ssl.{key} is not set"
            ))
        };
        let cert = ssl
            .server_key_cert_chain_path
            .as_ref()
            .ok_or_else(|| missing("server-key-cert-chain-path"))?;
        let key = ssl
            .server_private_key_path
            .as_ref()
            .ok_or_else(|| missing("server-private-key-path"))?;
        let mut tls = ServerTls::from_pem_files(cert, key)?;
        if let Some(ca) = &ssl.server_trust_cert_collection_path {
            tls = tls.client_ca_file(ca)?;
        }
        server = Some(tls);
    }
    let mut client = None;
    if let Some(ca) = &ssl.client_trust_cert_collection_path {
        let mut tls = ClientTls::new().ca_file(ca)?;
        match (
            &ssl.client_key_cert_chain_path,
            &ssl.client_private_key_path,
        ) {
            (Some(cert), Some(key)) => tls = tls.identity_files(cert, key)?,
            (None, None) => {}
            _ => {
                return Err(Error::Config(
                    "ssl.client-key-cert-chain-path and ssl.client-private-key-path go \
                     together: set both or neither"
                        .into(),
                ));
            }
        }
        if let Some(name) = &ssl.server_name {
            tls = tls.server_name(name.clone());
        }
        client = Some(tls);
    }
    Ok((server, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_address_or_the_override() {
        let name = server_name_for("127.0.0.1:20880", None).unwrap();
        assert!(matches!(name, ServerName::IpAddress(_)));
        let name = server_name_for("[::1]:20880", None).unwrap();
        assert!(matches!(name, ServerName::IpAddress(_)));
        let name = server_name_for("10.0.0.5:1", Some("provider.example")).unwrap();
        assert_eq!(name.to_str(), "provider.example");
    }

    #[test]
    fn missing_files_are_named() {
        let error = ServerTls::from_pem_files("/nonexistent/provider.crt", "/nonexistent/k")
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/provider.crt"), "{error}");
        let error = ClientTls::new().rustls_config().unwrap_err().to_string();
        assert!(error.contains("no trusted CA"), "{error}");
    }
}
