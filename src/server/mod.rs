//! `pigeonpost serve`: load state, bind every configured listener, run until
//! SIGTERM/SIGINT, then stop accepting and let sessions finish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::throttle::Throttle;
use crate::auth::Auth;
use crate::config::{Config, Listener, Protocol, SslMode};
use crate::mailauth::MailAuth;
use crate::net::anvil::{Anvil, Event, RateLimits};
use crate::net::pending::Pending;
use crate::net::{self, ConnLimiter, Gate, Handler, ListenerSpec, Refusal};
use crate::smtp::inbound::SmtpHandler;
use crate::store::notify::Notifier;
use crate::tables::reload::{self, Reloadable};
use crate::tables::Tables;
use crate::tls::CertStore;
use crate::{imap, pop3, smtp};
use http::HttpHandler;

mod autoconfig;
mod http;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen for {listener} on {addr}: {source}")]
    Bind {
        listener: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    State(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Another server holds the queue's `master.lock`.
    #[error("{0}")]
    AlreadyRunning(String),
}

impl ServeError {
    /// Problems the administrator fixes in the configuration or its files exit 2.
    pub fn is_config(&self) -> bool {
        matches!(self, ServeError::Tls(_) | ServeError::State(_))
    }
}

/// Everything the server holds. Only this module sees all of it: each
/// protocol gets a context with just what it uses (`smtp::Ctx`,
/// `imap::Ctx`, `pop3::Ctx`), built here.
pub struct State {
    pub config: Arc<Config>,
    pub tables: Arc<Tables>,
    pub auth: Arc<Auth>,
    /// TLS of the SMTP listeners (`smtpd_tls_protocols`).
    pub smtp_tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS of IMAP and POP3 (`ssl_min_protocol`); none with `ssl = no`.
    pub mail_tls: Option<Arc<rustls::ServerConfig>>,
    /// The certificate in force (reloaded from `ssl_cert`/`ssl_key`).
    pub certs: Option<Arc<CertStore>>,
    /// `acme_domains`: the challenge answers of the order in progress.
    pub acme: Option<Arc<crate::acme::Challenges>>,
    pub queue: Arc<crate::smtp::queue::Queue>,
    /// Every in-process writer of a mailbox tells it; IMAP listens.
    pub notify: Arc<Notifier>,
    /// The mailboxes IMAP sessions have open, shared between sessions.
    pub mailboxes: Arc<imap::backend::Mailboxes>,
    /// SPF/DKIM/DMARC verification and DKIM signing.
    pub mail_auth: Arc<MailAuth>,
    /// Postfix's anvil rate counters, shared by the SMTP listeners.
    pub anvil: Arc<Anvil>,
    /// DNS and policy-service connections of the SMTP restrictions.
    pub restrict: Arc<smtp::restrict::Checker>,
    pub ready: AtomicBool,
    /// `queue_directory/master.lock`, held (flock) while this server runs.
    pub master_lock: Option<std::fs::File>,
}

/// Takes `queue_directory/master.lock` (like Postfix's
/// `data_directory/master.lock`): one server per queue, since two would
/// deliver the same queued messages twice. The file holds the pid.
pub fn lock_queue(queue_directory: &std::path::Path) -> Result<std::fs::File, ServeError> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let io = |e: std::io::Error| {
        ServeError::State(format!(
            "queue_directory {}: cannot take master.lock: {e}",
            queue_directory.display()
        ))
    };
    std::fs::create_dir_all(queue_directory).map_err(io)?;
    let path = queue_directory.join("master.lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(io)?;
    // SAFETY: flock on a descriptor we own; released when it closes.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io(e));
        }
        let mut text = String::new();
        let _ = f.read_to_string(&mut text);
        let pid = text.trim();
        let who = if pid.is_empty() {
            "another pigeonpost serve".to_string()
        } else {
            format!("another pigeonpost serve (pid {pid})")
        };
        return Err(ServeError::AlreadyRunning(format!(
            "{who} is already running on queue_directory {} (it holds {}); stop it first, or give this server its own queue_directory",
            queue_directory.display(),
            path.display()
        )));
    }
    f.set_len(0).map_err(io)?;
    f.rewind().map_err(io)?;
    writeln!(f, "{}", std::process::id()).map_err(io)?;
    Ok(f)
}

/// One context per protocol, shared by its listeners.
struct Contexts {
    smtp: Arc<smtp::Ctx>,
    imap: Arc<imap::Ctx>,
    pop3: Arc<pop3::Ctx>,
}

impl State {
    fn contexts(&self) -> Contexts {
        Contexts {
            smtp: self.smtp_ctx(),
            imap: self.imap_ctx(),
            pop3: self.pop3_ctx(),
        }
    }

    fn smtp_ctx(&self) -> Arc<smtp::Ctx> {
        Arc::new(smtp::Ctx {
            config: self.config.clone(),
            tables: self.tables.clone(),
            auth: self.auth.clone(),
            tls: self.smtp_tls.clone(),
            queue: self.queue.clone(),
            notify: self.notify.clone(),
            mail_auth: self.mail_auth.clone(),
            anvil: self.anvil.clone(),
            restrict: self.restrict.clone(),
        })
    }

    fn imap_ctx(&self) -> Arc<imap::Ctx> {
        Arc::new(imap::Ctx {
            config: self.config.clone(),
            auth: self.auth.clone(),
            tls: self.mail_tls.clone(),
            mailboxes: self.mailboxes.clone(),
        })
    }

    fn pop3_ctx(&self) -> Arc<pop3::Ctx> {
        Arc::new(pop3::Ctx {
            config: self.config.clone(),
            auth: self.auth.clone(),
            tls: self.mail_tls.clone(),
            notify: self.notify.clone(),
        })
    }
}

/// Loads every file the configuration names (tables, users, certificates).
/// The shared state plus every file to watch for reload.
pub type Started = (Arc<State>, Vec<Arc<dyn Reloadable>>);

pub fn build_state(config: Config) -> Result<Started, ServeError> {
    let tables = Tables::open(&config).map_err(|e| ServeError::State(e.to_string()))?;
    let auth = Auth::open(&config).map_err(|e| ServeError::State(e.to_string()))?;
    let mail_auth = MailAuth::open(&config).map_err(ServeError::State)?;
    let mut reloadables: Vec<Arc<dyn Reloadable>> = tables.reloadables();
    reloadables.extend(auth.reloadables());
    reloadables.extend(mail_auth.reloadables());
    if let (Some(acme), Some(c), Some(k)) = (&config.acme, &config.ssl_cert, &config.ssl_key) {
        crate::acme::prepare(acme, c, k).map_err(ServeError::State)?;
    }
    let tls = match (&config.ssl_cert, &config.ssl_key) {
        (Some(c), Some(k)) => {
            let store = CertStore::load(c, k)?;
            reloadables.push(store.clone());
            Some(store)
        }
        _ => None,
    };
    let smtp_tls = tls.as_ref().map(|s| {
        let v = config.smtpd_tls_versions;
        s.server_config(v.tls12, v.tls13)
    });
    let mail_tls = tls
        .as_ref()
        .filter(|_| config.ssl != SslMode::No)
        .map(|s| s.server_config(config.ssl_versions.tls12, config.ssl_versions.tls13));
    // Before the queue is opened (and recovered): it may be another server's.
    let master_lock = lock_queue(&config.queue_directory)?;
    let queue = crate::smtp::queue::Queue::open(&config).map_err(|e| {
        ServeError::State(format!(
            "queue_directory {}: {e}",
            config.queue_directory.display()
        ))
    })?;
    let notify = Notifier::new();
    let anvil = Arc::new(Anvil::new(RateLimits {
        unit: config.anvil_rate_time_unit,
        connection: config.smtpd_client_connection_rate_limit,
        message: config.smtpd_client_message_rate_limit,
        recipient: config.smtpd_client_recipient_rate_limit,
        new_tls_session: config.smtpd_client_new_tls_session_rate_limit,
        auth: config.smtpd_client_auth_rate_limit,
        exceptions: config.smtpd_client_event_limit_exceptions.clone(),
    }));
    let restrict = smtp::restrict::Checker::new(&config).map_err(ServeError::State)?;
    let state = Arc::new(State {
        anvil,
        restrict: Arc::new(restrict),
        mailboxes: imap::backend::Mailboxes::new(notify.clone()),
        mail_auth: Arc::new(mail_auth),
        notify,
        queue: Arc::new(queue),
        tables: Arc::new(tables),
        master_lock: Some(master_lock),
        auth: Arc::new(auth),
        acme: config.acme.as_ref().map(|_| crate::acme::Challenges::new()),
        config: Arc::new(config),
        smtp_tls,
        mail_tls,
        certs: tls,
        ready: AtomicBool::new(false),
    });
    Ok((state, reloadables))
}

impl Reloadable for CertStore {
    fn describe(&self) -> String {
        let [c, k] = self.paths();
        format!("TLS certificate {} / {}", c.display(), k.display())
    }
    fn paths(&self) -> Vec<std::path::PathBuf> {
        self.paths().iter().map(|p| p.to_path_buf()).collect()
    }
    fn reload(&self) -> Result<(), String> {
        CertStore::reload(self).map_err(|e| e.to_string())
    }
}

/// At connect: banned clients (every listener), and Postfix's connection
/// and new-TLS-session rates (SMTP listeners).
struct ConnectGate {
    throttle: Arc<Throttle>,
    anvil: Option<Arc<Anvil>>,
    implicit_tls: bool,
}

impl Gate for ConnectGate {
    fn check(&self, listener: &'static str, client: std::net::IpAddr) -> Result<(), Refusal> {
        if self.throttle.is_banned(client) {
            return Err(Refusal::Banned);
        }
        if let Some(anvil) = &self.anvil {
            if !anvil.allow(Event::Connection, listener, client) {
                return Err(Refusal::ConnectionRate);
            }
            if self.implicit_tls && !anvil.allow(Event::NewTlsSession, listener, client) {
                return Err(Refusal::NewTlsSessionRate);
            }
        }
        Ok(())
    }
}

/// Which handler serves a listener.
fn handler_for(listener: Listener, state: &Arc<State>, ctx: &Contexts) -> Arc<dyn Handler> {
    match listener.protocol() {
        Protocol::Http => Arc::new(HttpHandler {
            state: state.clone(),
        }),
        Protocol::Smtp => Arc::new(SmtpHandler {
            ctx: ctx.smtp.clone(),
            listener,
        }),
        Protocol::Pop3 => Arc::new(pop3::session::Pop3Handler {
            ctx: ctx.pop3.clone(),
        }),
        Protocol::Imap => Arc::new(imap::session::ImapHandler {
            ctx: ctx.imap.clone(),
        }),
        Protocol::Lmtp => Arc::new(Pending::for_listener(listener, &state.config.myhostname)),
    }
}

/// Whether a listener runs: Dovecot's `protocols` switches IMAP/POP3/LMTP on or off.
fn enabled(listener: Listener, config: &Config) -> bool {
    match listener.protocol() {
        Protocol::Smtp | Protocol::Http => true,
        p => config.protocols.iter().any(|name| name == p.name()),
    }
}

/// Binds everything, serves until a shutdown signal, then drains.
pub async fn run(
    state: Arc<State>,
    reloadables: Vec<Arc<dyn Reloadable>>,
) -> Result<(), ServeError> {
    // Installed first, so a SIGTERM that arrives right after "ready" is
    // handled as a shutdown rather than killing the process.
    let signals = Signals::install()?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let config = &state.config;
    let contexts = state.contexts();
    let handshakes =
        net::handshakes::Handshakes::new(config.smtpd_client_event_limit_exceptions.clone());
    let mut bound = Vec::new();
    for (listener, addrs) in config.listen.all() {
        if addrs.is_empty() || !enabled(listener, config) {
            continue;
        }
        let name = listener.name();
        let handler = handler_for(listener, &state, &contexts);
        let implicit_tls = if listener.implicit_tls() {
            let tls = match listener.protocol() {
                Protocol::Smtp => &state.smtp_tls,
                _ => &state.mail_tls,
            };
            match tls {
                Some(c) => Some(c.clone()),
                None if state.config.ssl == SslMode::No && state.smtp_tls.is_some() => {
                    tracing::warn!(listener = name, "not started: ssl = no");
                    continue;
                }
                None => {
                    tracing::warn!(
                        listener = name,
                        "not started: it needs TLS and ssl_cert/ssl_key are not set"
                    );
                    continue;
                }
            }
        } else {
            None
        };
        let gate: Arc<dyn Gate> = Arc::new(ConnectGate {
            throttle: state.auth.throttle.clone(),
            anvil: (listener.protocol() == Protocol::Smtp).then(|| state.anvil.clone()),
            implicit_tls: implicit_tls.is_some(),
        });
        let acme_alpn = match (&config.acme, &state.certs) {
            (Some(a), Some(certs))
                if implicit_tls.is_some()
                    && a.challenge == crate::config::AcmeChallenge::TlsAlpn01 =>
            {
                Some(certs.acme_alpn_config())
            }
            _ => None,
        };
        let limiter = ConnLimiter::new(
            config.max_connections,
            config.smtpd_client_connection_count_limit,
            config.smtpd_client_event_limit_exceptions.clone(),
        );
        for &addr in addrs {
            let listener = match net::bind(addr) {
                Ok(l) => l,
                Err(e) if addr.is_ipv6() && addr.ip().is_unspecified() && is_no_ipv6(&e) => {
                    tracing::warn!(listener = name, %addr, error = %e, "IPv6 unavailable; listening on IPv4 only");
                    continue;
                }
                Err(source) => {
                    return Err(ServeError::Bind {
                        listener: name,
                        addr,
                        source,
                    })
                }
            };
            let local = listener.local_addr()?;
            tracing::info!(listener = name, addr = %local, tls = implicit_tls.is_some(), "listening");
            let proxy_from = config
                .proxy_protocol
                .iter()
                .any(|l| l == name)
                .then(|| Arc::new(config.proxy_trusted_networks.clone()));
            let spec = ListenerSpec {
                proxy_from,
                name,
                addr: local,
                implicit_tls: implicit_tls.clone(),
                acme_alpn: acme_alpn.clone(),
                limiter: limiter.clone(),
                gate: Some(gate.clone()),
                handshakes: handshakes.clone(),
            };
            bound.push((listener, spec, handler.clone()));
        }
    }
    let _reload = reload::watch(reloadables);
    let outbound = crate::smtp::outbound::Outbound::new(
        &config.dns_servers,
        &config.myhostname,
        config.smtp_tls_security_level,
    )
    .map_err(ServeError::State)?;
    let queue_stop = CancellationToken::new();
    crate::smtp::queue::control::serve(state.queue.clone(), queue_stop.clone())
        .await
        .map_err(|e| {
            ServeError::State(format!(
                "control socket {}: {e}",
                state.queue.spool().control_socket().display()
            ))
        })?;
    crate::smtp::queue::control::serve_submit(
        state.queue.clone(),
        config.message_size_limit,
        queue_stop.clone(),
    )
    .await
    .map_err(|e| {
        ServeError::State(format!(
            "submit socket {}: {e}",
            state.queue.spool().submit_socket().display()
        ))
    })?;
    tokio::spawn(state.queue.clone().run(
        contexts.smtp.clone(),
        Arc::new(outbound),
        queue_stop.clone(),
    ));
    for (listener, spec, handler) in bound {
        tokio::spawn(net::serve(
            listener,
            spec,
            handler,
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    let acme_stop = CancellationToken::new();
    if let (Some(acme), Some(challenges), Some(certs), Some(cert), Some(key)) = (
        &config.acme,
        &state.acme,
        &state.certs,
        &config.ssl_cert,
        &config.ssl_key,
    ) {
        tokio::spawn(crate::acme::run(
            acme.clone(),
            cert.clone(),
            key.clone(),
            challenges.clone(),
            certs.clone(),
            acme_stop.clone(),
        ));
    }
    state.ready.store(true, Ordering::SeqCst);
    tracing::info!("pigeonpost ready");

    signals.wait().await;
    tracing::info!(timeout = ?config.shutdown_timeout, "shutting down: no new connections, waiting for sessions");
    state.ready.store(false, Ordering::SeqCst);
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(config.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = tracker.len(),
            "sessions still open at the shutdown deadline; closing them"
        );
    }
    queue_stop.cancel();
    acme_stop.cancel();
    let mailboxes = state.mailboxes.clone();
    let _ = tokio::task::spawn_blocking(move || mailboxes.close_all()).await;
    tracing::info!("stopped");
    Ok(())
}

fn is_no_ipv6(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
    )
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// Raises the soft limit on open files to the hard limit, as Dovecot and
/// nginx do: every connection, mailbox and inotify watch is a descriptor,
/// and distributions start services with a soft limit of 1,024, which
/// 1,000 idle IMAP clients would use up. Returns (before, after) when it
/// raised it.
pub fn raise_open_files_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur >= lim.rlim_max
    {
        return None;
    }
    let before = lim.rlim_cur;
    // No system takes more than this in one process anyway (nr_open).
    lim.rlim_cur = lim.rlim_max.min(1 << 20);
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return None;
    }
    Some((before, lim.rlim_cur))
}
