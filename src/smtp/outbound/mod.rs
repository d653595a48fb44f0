//! Sending one queued message to one next hop: resolve the hop to
//! addresses, try them in order, and run the [`client::Client`] state
//! machine over TCP (and TLS after STARTTLS).

pub mod client;
pub mod downgrade;
pub mod nexthop;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use client::{Client, ClientConfig, HostError, RcptStatus, Step, TlsPolicy, Transaction};
use nexthop::{Dns, NextHop, Target};

use crate::wire::DotStuffer;

/// Postfix's smtp_connect_timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Postfix's smtp_*_timeout values are 300 s; end of data may take longer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);
const DATA_DONE_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything needed to send mail out.
pub struct Outbound {
    pub dns: Dns,
    pub myhostname: String,
    pub tls: TlsPolicy,
    /// `may` and `encrypt`: encryption without authentication (as Postfix).
    unverified: Arc<rustls::ClientConfig>,
    /// `verify`: the web PKI roots and the host name.
    verified: Arc<rustls::ClientConfig>,
}

/// The result of one delivery attempt to one next hop.
#[derive(Debug)]
pub struct Attempt {
    /// One per recipient, in order; never `Unknown`.
    pub statuses: Vec<RcptStatus>,
    /// `name[ip]` of the server that answered, for DSNs and logs.
    pub remote: Option<String>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Outbound {
    pub fn new(
        dns_servers: &[SocketAddr],
        myhostname: &str,
        tls: TlsPolicy,
    ) -> Result<Outbound, String> {
        let versions = &[&rustls::version::TLS13, &rustls::version::TLS12];
        let unverified = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            .with_no_client_auth();
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let verified = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Outbound {
            dns: Dns::new(dns_servers)?,
            myhostname: myhostname.to_string(),
            tls,
            unverified: Arc::new(unverified),
            verified: Arc::new(verified),
        })
    }

    /// Delivers `message` (the spool file, CRLF, not dot-stuffed) for
    /// `txn`'s recipients via `hop`.
    pub async fn deliver(
        &self,
        hop: &NextHop,
        credentials: Option<(String, String)>,
        txn: &Transaction,
        message: &Path,
    ) -> Attempt {
        let n = txn.rcpts.len();
        let all = |s: RcptStatus| Attempt {
            statuses: vec![s; n],
            remote: None,
        };
        let targets = match self.dns.targets(hop, &self.myhostname).await {
            Ok(t) => t,
            Err(e) if e.permanent => return all(RcptStatus::Failed(e.text)),
            Err(e) => return all(RcptStatus::Deferred(e.text)),
        };
        let mut last = String::new();
        for target in &targets {
            let label = format!("{}[{}]", target.name, target.addr.ip());
            let mut try_tls = true;
            loop {
                let cfg = ClientConfig {
                    helo: self.myhostname.clone(),
                    tls: self.tls,
                    try_tls,
                    credentials: credentials.clone(),
                };
                match self.session(target, cfg, txn, message).await {
                    SessionEnd::Connect(e) => {
                        last = format!("connect to {label}:{}: {e}", target.addr.port());
                    }
                    SessionEnd::TlsFailed(e) if try_tls && self.tls == TlsPolicy::May => {
                        // Opportunistic TLS: a broken handshake is retried in
                        // plaintext rather than never delivering.
                        tracing::info!(host = %label, error = %e, "TLS handshake failed; retrying without TLS");
                        try_tls = false;
                        continue;
                    }
                    SessionEnd::TlsFailed(e) => {
                        last = format!("TLS handshake with {label} failed: {e}");
                    }
                    SessionEnd::Host(HostError { text, permanent }) => {
                        let text = if text.contains("loops back to myself") {
                            text
                        } else {
                            format!("host {label} said: {text}")
                        };
                        if permanent {
                            return Attempt {
                                remote: Some(label),
                                ..all(RcptStatus::Failed(text))
                            };
                        }
                        last = text;
                    }
                    SessionEnd::Done(statuses) => {
                        let prefix = |t: String| format!("host {label} said: {t}");
                        let statuses = statuses
                            .into_iter()
                            .map(|s| match s {
                                RcptStatus::Delivered(t) => RcptStatus::Delivered(prefix(t)),
                                RcptStatus::Deferred(t) => RcptStatus::Deferred(prefix(t)),
                                RcptStatus::Failed(t) => RcptStatus::Failed(prefix(t)),
                                RcptStatus::Unknown => {
                                    RcptStatus::Deferred(format!("lost connection with {label}"))
                                }
                            })
                            .collect();
                        return Attempt {
                            statuses,
                            remote: Some(label),
                        };
                    }
                }
                break;
            }
        }
        all(RcptStatus::Deferred(last))
    }

    async fn session(
        &self,
        target: &Target,
        cfg: ClientConfig,
        txn: &Transaction,
        message: &Path,
    ) -> SessionEnd {
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.addr)).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return SessionEnd::Connect(e.to_string()),
            Err(_) => return SessionEnd::Connect("Connection timed out".into()),
        };
        let _ = tcp.set_nodelay(true);
        let label = format!("{}[{}]", target.name, target.addr.ip());
        let mut client = Client::new(cfg, txn.clone());
        let mut plain = tcp;
        match drive(&mut client, &mut plain, message, &label).await {
            Drive::Finished => return finish(&client),
            Drive::StartTls => {}
        }
        let tls_config = if self.tls == TlsPolicy::Verify {
            self.verified.clone()
        } else {
            self.unverified.clone()
        };
        let name = match ServerName::try_from(target.name.clone()) {
            Ok(n) => n,
            Err(_) => ServerName::IpAddress(target.addr.ip().into()),
        };
        let connector = tokio_rustls::TlsConnector::from(tls_config);
        let mut tls =
            match tokio::time::timeout(REPLY_TIMEOUT, connector.connect(name, plain)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return SessionEnd::TlsFailed(e.to_string()),
                Err(_) => return SessionEnd::TlsFailed("timed out".into()),
            };
        client.tls_started();
        match drive(&mut client, &mut tls, message, &label).await {
            Drive::Finished => finish(&client),
            Drive::StartTls => {
                client.abort("STARTTLS asked for twice");
                finish(&client)
            }
        }
    }
}

enum SessionEnd {
    Connect(String),
    TlsFailed(String),
    Host(HostError),
    Done(Vec<RcptStatus>),
}

fn finish(client: &Client) -> SessionEnd {
    match client.outcome() {
        Ok(s) => SessionEnd::Done(s),
        Err(e) => SessionEnd::Host(e),
    }
}

enum Drive {
    Finished,
    StartTls,
}

/// Runs the client over `stream` until it is done or wants TLS. I/O
/// errors and timeouts end the session through [`Client::abort`].
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client,
    stream: &mut S,
    message: &Path,
    label: &str,
) -> Drive {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let out = client.take_output();
        if !out.is_empty() {
            if let Err(e) = write_all(stream, &out).await {
                client.abort(&format!(
                    "lost connection with {label} while {}: {e}",
                    client.context()
                ));
                return Drive::Finished;
            }
        }
        match client.next_step() {
            Step::NeedInput => {
                let timeout = if client.context().starts_with("sending end of data") {
                    DATA_DONE_TIMEOUT
                } else {
                    REPLY_TIMEOUT
                };
                match tokio::time::timeout(timeout, stream.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        client.abort(&format!(
                            "lost connection with {label} while {}",
                            client.context()
                        ));
                        return Drive::Finished;
                    }
                    Ok(Ok(n)) => client.feed(&buf[..n]),
                    Err(_) => {
                        client.abort(&format!(
                            "conversation with {label} timed out while {}",
                            client.context()
                        ));
                        return Drive::Finished;
                    }
                }
            }
            Step::StartTls => return Drive::StartTls,
            Step::SendMessage => {
                if let Err(e) = send_message(stream, message, client.downgrade_needed()).await {
                    client.abort(&format!(
                        "lost connection with {label} while sending message body: {e}"
                    ));
                    return Drive::Finished;
                }
                client.message_sent();
            }
            Step::Done => {
                let _ = stream.shutdown().await;
                return Drive::Finished;
            }
        }
    }
}

async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, data: &[u8]) -> std::io::Result<()> {
    tokio::time::timeout(REPLY_TIMEOUT, async {
        stream.write_all(data).await?;
        stream.flush().await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
}

/// Streams the spool file dot-stuffed (RFC 5321 §4.5.2), then ".\r\n".
/// With `downgrade`, 8-bit parts are converted to quoted-printable first
/// (the whole message in memory; it is at most message_size_limit).
async fn send_message<S: AsyncWrite + Unpin>(
    stream: &mut S,
    path: &Path,
    downgrade: bool,
) -> std::io::Result<()> {
    let mut stuffer = DotStuffer::full();
    if downgrade {
        let raw = tokio::fs::read(path).await?;
        let converted =
            tokio::task::spawn_blocking(move || downgrade::to_7bit(&raw).unwrap_or(raw))
                .await
                .map_err(std::io::Error::other)?;
        let mut out = Vec::with_capacity(converted.len() + converted.len() / 32 + 8);
        stuffer.encode(&converted, &mut out);
        stuffer.finish(&mut out);
        return write_all(stream, &out).await;
    }
    let mut file = tokio::fs::File::open(path).await?;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(70 * 1024);
    loop {
        let n = file.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        out.clear();
        stuffer.encode(&chunk[..n], &mut out);
        write_all(stream, &out).await?;
    }
    out.clear();
    stuffer.finish(&mut out);
    write_all(stream, &out).await
}
