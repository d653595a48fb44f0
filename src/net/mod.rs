//! Listeners: bind, accept, enforce connection limits, optionally do the
//! implicit-TLS handshake, and hand each connection to its protocol's
//! [`Handler`]. Shutdown is broadcast through a `CancellationToken`; the
//! `TaskTracker` lets the server wait for sessions to finish.

pub mod anvil;
pub mod clients;
pub mod deflate;
pub mod handshakes;
pub mod limits;
pub mod pace;
pub mod pending;
pub mod proxy;
pub mod stream;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use limits::{ConnLimiter, Refusal, Slot};
pub use stream::Stream;

/// Time allowed for a TLS handshake (implicit TLS or STARTTLS) before the
/// connection is dropped: a real client needs well under a second.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted client connection, ready for a protocol session.
pub struct Conn {
    pub stream: Stream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub listener: &'static str,
    /// Cancelled when the server shuts down; sessions say goodbye and end.
    pub shutdown: CancellationToken,
    /// Keeps the connection's place in the limits until dropped.
    pub slot: Slot,
    /// Places for TLS handshakes in progress, shared by every listener.
    pub handshakes: Arc<handshakes::Handshakes>,
    /// The two waits of [`Conn::read_input`], kept from read to read: moving a
    /// registered timer's deadline later is a clock read and an atomic
    /// store, where a timer and a shutdown waiter made per read took the
    /// timer wheel's and the token's locks twice each (per POP3 command of
    /// a fetchmail pull).
    idle: Pin<Box<tokio::time::Sleep>>,
    stopping: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

/// What waiting for a client's next bytes gave.
pub enum Input {
    Data(usize),
    /// The client closed the connection (or it broke).
    Eof,
    /// Nothing came within the session's idle timeout.
    Timeout,
    /// The server is shutting down.
    Shutdown,
}

impl Conn {
    /// The client is this very host (same address as the one it connected
    /// to), not merely loopback: Dovecot's rule for "secured" without TLS.
    pub fn is_local_client(&self) -> bool {
        self.peer.ip() == self.local.ip()
    }

    /// STARTTLS / STLS: the connection becomes TLS with `config` (`None`:
    /// TLS isn't configured, which the session never offers). False, and
    /// logged under `command`, if the handshake fails: the caller closes.
    pub async fn start_tls(
        &mut self,
        config: Option<Arc<rustls::ServerConfig>>,
        timeout: std::time::Duration,
        command: &str,
    ) -> bool {
        let Some(config) = config else {
            return false;
        };
        let Some(_slot) = self.handshakes.try_acquire(self.peer.ip()) else {
            crate::observe::metrics::limited("tls_handshakes");
            tracing::info!(client = %self.peer, "{command} refused: too many TLS handshakes in progress");
            return false;
        };
        match self
            .stream
            .start_tls(config, timeout.min(TLS_HANDSHAKE_TIMEOUT))
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(client = %self.peer, "{command} {e}");
                false
            }
        }
    }

    /// Reads the client's next bytes into `buf`, giving up after `timeout`
    /// or when the server shuts down.
    pub async fn read_input(&mut self, buf: &mut [u8], timeout: std::time::Duration) -> Input {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(far_future);
        self.idle.as_mut().reset(deadline);
        tokio::select! {
            biased;
            _ = self.stopping.as_mut() => Input::Shutdown,
            r = self.stream.read(buf) => match r {
                Ok(0) | Err(_) => Input::Eof,
                Ok(n) => Input::Data(n),
            },
            _ = self.idle.as_mut() => Input::Timeout,
        }
    }
}

/// A deadline no session reaches (a timeout too big to add to now).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

impl Conn {
    /// A connection accepted from `peer` on `local`, for `listener`'s protocol.
    fn new(
        stream: Stream,
        peer: SocketAddr,
        local: SocketAddr,
        listener: &'static str,
        shutdown: CancellationToken,
        slot: Slot,
        handshakes: Arc<handshakes::Handshakes>,
    ) -> Conn {
        let idle = Box::pin(tokio::time::sleep_until(far_future()));
        let stopping = Box::pin(shutdown.clone().cancelled_owned());
        Conn {
            stream,
            peer,
            local,
            listener,
            shutdown,
            slot,
            handshakes,
            idle,
            stopping,
        }
    }
}

pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A protocol's connection handler.
pub trait Handler: Send + Sync + 'static {
    /// Runs one session to completion.
    fn handle(self: Arc<Self>, conn: Conn) -> BoxFuture;
    /// The line sent before closing a connection from `client` refused by a limit.
    fn refusal(&self, why: Refusal, client: IpAddr) -> Vec<u8>;
}

/// A check at connect, before the connection gets a slot: bans and
/// connection rates (the server's policy, which this layer doesn't know).
pub trait Gate: Send + Sync {
    fn check(&self, listener: &'static str, client: IpAddr) -> Result<(), Refusal>;
}

/// How a listener treats new connections.
#[derive(Clone)]
pub struct ListenerSpec {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// Implicit TLS (465/993/995): handshake before the session starts.
    pub implicit_tls: Option<Arc<rustls::ServerConfig>>,
    /// With implicit TLS and `acme_challenge = tls-alpn-01`: the config for
    /// a ClientHello asking for `acme-tls/1` (RFC 8737), chosen per hello.
    pub acme_alpn: Option<Arc<rustls::ServerConfig>>,
    pub limiter: Arc<ConnLimiter>,
    /// Expect a PROXY protocol header, only from these networks.
    pub proxy_from: Option<Arc<Vec<ipnet::IpNet>>>,
    pub gate: Option<Arc<dyn Gate>>,
    /// Places for TLS handshakes in progress, shared by every listener.
    pub handshakes: Arc<handshakes::Handshakes>,
}

impl ListenerSpec {
    /// The gate's verdict, then a slot in the connection limits.
    fn admit(&self, client: IpAddr) -> Result<Slot, Refusal> {
        if let Some(gate) = &self.gate {
            gate.check(self.name, client)?;
        }
        self.limiter.acquire(client)
    }
}

/// Binds a listening socket. IPv6 sockets are v6-only so `0.0.0.0:p` and `[::]:p` can coexist.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    socket.set_reuseaddr(true)?;
    if addr.is_ipv6() {
        let sock = socket2_ref(&socket);
        sock.set_only_v6(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

fn socket2_ref(socket: &TcpSocket) -> socket2::SockRef<'_> {
    socket2::SockRef::from(socket)
}

/// How long a client may take to send its PROXY header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    spec: ListenerSpec,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = spec.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().unwrap_or(spec.addr);
        // Without PROXY, the slot is taken here, in accept order, so limits
        // are exact; with PROXY the real client is only known after the header.
        let early_slot = if spec.proxy_from.is_none() {
            Some(spec.admit(peer.ip()))
        } else {
            None
        };
        let handler = handler.clone();
        let spec = spec.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let (mut tcp, peer) = if spec.proxy_from.is_some() {
                match read_proxy_header(tcp, peer, &spec).await {
                    Some(x) => x,
                    None => return,
                }
            } else {
                (tcp, peer)
            };
            let slot = early_slot.unwrap_or_else(|| spec.admit(peer.ip()));
            match slot {
                Ok(slot) => run_session(tcp, peer, local, slot, spec, handler, shutdown).await,
                Err(why) => {
                    crate::observe::metrics::limited(why.label());
                    // A banned client knocks again and again: its ban was logged once.
                    if why == Refusal::Banned {
                        tracing::debug!(listener = spec.name, client = %peer, "connection refused: client banned");
                    } else {
                        tracing::warn!(listener = spec.name, client = %peer, reason = ?why, "connection refused by limit");
                    }
                    // Over implicit TLS there is no plain-text channel to explain on.
                    if spec.implicit_tls.is_none() {
                        let line = handler.refusal(why, peer.ip());
                        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(&line)).await;
                    }
                }
            }
        });
    }
}

/// Reads and strips the PROXY header; None (connection dropped, logged)
/// when the sender is not trusted or the header is missing or malformed.
async fn read_proxy_header(
    tcp: TcpStream,
    peer: SocketAddr,
    spec: &ListenerSpec,
) -> Option<(TcpStream, SocketAddr)> {
    let trusted = spec
        .proxy_from
        .as_ref()
        .is_some_and(|nets| nets.iter().any(|n| n.contains(&peer.ip())));
    if !trusted {
        tracing::warn!(listener = spec.name, client = %peer, "PROXY protocol expected but the client is not in proxy_trusted_networks; closing");
        return None;
    }
    let mut tcp = tcp;
    let result = tokio::time::timeout(PROXY_HEADER_TIMEOUT, async {
        let mut buf = [0u8; 536];
        loop {
            let n = tcp.peek(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed before the PROXY header".to_string());
            }
            match proxy::parse(&buf[..n]) {
                Ok(Some(h)) => {
                    let mut skip = vec![0u8; h.len];
                    tcp.read_exact(&mut skip).await.map_err(|e| e.to_string())?;
                    return Ok(h.source.unwrap_or(peer));
                }
                Ok(None) if n < buf.len() => tokio::time::sleep(Duration::from_millis(5)).await,
                Ok(None) => return Err("PROXY header too long".to_string()),
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    match result {
        Ok(Ok(real)) => {
            tracing::debug!(listener = spec.name, proxy = %peer, client = %real, "PROXY header");
            Some((tcp, real))
        }
        Ok(Err(e)) => {
            tracing::warn!(listener = spec.name, client = %peer, error = %e, "bad PROXY header; closing");
            None
        }
        Err(_) => {
            tracing::warn!(listener = spec.name, client = %peer, "no PROXY header in time; closing");
            None
        }
    }
}

/// Runs the implicit-TLS handshake if any, then the protocol session.
async fn run_session(
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    slot: Slot,
    spec: ListenerSpec,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) {
    tracing::debug!(listener = spec.name, client = %peer, "connect");
    crate::observe::metrics::connection(spec.name);
    let stream = match spec.implicit_tls {
        Some(cfg) => {
            let Some(_slot) = spec.handshakes.try_acquire(peer.ip()) else {
                crate::observe::metrics::limited("tls_handshakes");
                tracing::info!(listener = spec.name, client = %peer, "refused: too many TLS handshakes in progress");
                return;
            };
            let acme_alpn = spec.acme_alpn.clone();
            let handshake = async move {
                match acme_alpn {
                    None => tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await,
                    Some(acme) => {
                        let start = tokio_rustls::LazyConfigAcceptor::new(
                            rustls::server::Acceptor::default(),
                            tcp,
                        )
                        .await?;
                        let chosen = if crate::tls::wants_acme_tls_alpn(&start.client_hello()) {
                            acme
                        } else {
                            cfg
                        };
                        start.into_stream(chosen).await
                    }
                }
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    tracing::info!(listener = spec.name, client = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(listener = spec.name, client = %peer, "TLS handshake timed out");
                    return;
                }
            }
        }
        None => Stream::Plain(tcp),
    };
    let conn = Conn::new(
        stream,
        peer,
        local,
        spec.name,
        shutdown,
        slot,
        spec.handshakes.clone(),
    );
    handler.handle(conn).await;
    tracing::debug!(listener = spec.name, client = %peer, "disconnect");
}
