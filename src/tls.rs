//! TLS for every listener: one certificate pair (`ssl_cert`/`ssl_key`),
//! TLS 1.2+ with the ring provider, and a resolver whose certificate can be
//! swapped at run time (reload) without touching existing connections.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::crypto::ring as ring_provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

fn file_err(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Loads and checks a PEM certificate chain and its private key.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, format!("cannot read certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, format!("bad PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(file_err(cert, "no CERTIFICATE block found"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_err(key, format!("no usable private key: {e}")))?;
    let signing_key = ring_provider::sign::any_supported_type(&key_der)
        .map_err(|e| file_err(key, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| {
        file_err(
            key,
            format!("does not match the certificate in {}: {e}", cert.display()),
        )
    })?;
    Ok(certified)
}

/// The current certificate, swappable while connections are being served.
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    cert_path: PathBuf,
    key_path: PathBuf,
    /// tls-alpn-01 (RFC 8737) challenge certificates by host name, while an
    /// ACME order is in progress.
    alpn_challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish()
    }
}

impl CertStore {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let ck = load_certified_key(cert, key)?;
        Ok(Arc::new(CertStore {
            current: ArcSwap::from_pointee(ck),
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            alpn_challenges: Mutex::new(HashMap::new()),
        }))
    }

    /// Re-reads the files; on error the previous certificate stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = load_certified_key(&self.cert_path, &self.key_path)?;
        self.current.store(Arc::new(ck));
        Ok(())
    }

    pub fn paths(&self) -> [&Path; 2] {
        [&self.cert_path, &self.key_path]
    }

    /// A rustls server config (TLS 1.2 and/or 1.3, as `smtpd_tls_protocols`
    /// or `ssl_min_protocol` say) that always uses the current certificate.
    pub fn server_config(self: &Arc<Self>, tls12: bool, tls13: bool) -> Arc<ServerConfig> {
        let mut list: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
        if tls13 {
            list.push(&rustls::version::TLS13);
        }
        if tls12 || list.is_empty() {
            list.push(&rustls::version::TLS12);
        }
        let mut cfg =
            ServerConfig::builder_with_provider(Arc::new(ring_provider::default_provider()))
                .with_protocol_versions(&list)
                .expect("ring supports TLS 1.2 and 1.3")
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(Resolver(self.clone())));
        cfg.ignore_client_order = true;
        Arc::new(cfg)
    }

    /// Serves, to a client that asks for the `acme-tls/1` protocol with
    /// `name` as SNI, a self-signed certificate carrying the acmeIdentifier
    /// extension with `digest` (RFC 8737 §3), until [`Self::clear_alpn_challenges`].
    pub fn set_alpn_challenge(&self, name: &str, digest: &[u8]) -> Result<(), TlsError> {
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
        let key = rcgen::KeyPair::generate()
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signing = ring_provider::sign::any_supported_type(&key_der)?;
        let ck = CertifiedKey::new(vec![cert.der().clone()], signing);
        self.alpn_challenges
            .lock()
            .unwrap()
            .insert(name.to_ascii_lowercase(), Arc::new(ck));
        Ok(())
    }

    pub fn clear_alpn_challenges(&self) {
        self.alpn_challenges.lock().unwrap().clear();
    }

    /// The config for a client that asked for `acme-tls/1` (see
    /// [`wants_acme_tls_alpn`]): that protocol only, and the challenge
    /// certificate of its SNI name (no certificate, no handshake, otherwise).
    pub fn acme_alpn_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut cfg =
            ServerConfig::builder_with_provider(Arc::new(ring_provider::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .expect("ring supports TLS 1.2 and 1.3")
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(AlpnResolver(self.clone())));
        cfg.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        Arc::new(cfg)
    }
}

/// The ALPN protocol of tls-alpn-01 (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Whether a ClientHello is an ACME server's tls-alpn-01 validation.
pub fn wants_acme_tls_alpn(hello: &ClientHello<'_>) -> bool {
    hello
        .alpn()
        .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
}

#[derive(Debug)]
struct AlpnResolver(Arc<CertStore>);

impl ResolvesServerCert for AlpnResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_ascii_lowercase();
        self.0.alpn_challenges.lock().unwrap().get(&name).cloned()
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load_full())
    }
}

/// A self-signed certificate for `names`, PEM (cert, key); for `serve --dev` and tests.
pub fn self_signed(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("rcgen generates a key pair");
    (ck.cert.pem(), ck.key_pair.serialize_pem())
}
