//! POP3 (RFC 1939) on 110 with STLS and 995 with implicit TLS, over the
//! Dovecot-compatible Maildir store: the same UIDLs as Dovecot, so clients
//! moving over download nothing twice.

pub mod proto;
pub mod session;

use std::sync::Arc;

use crate::auth::Auth;
use crate::config::Config;

/// What POP3 sessions use of the server's state, built by `server.rs`.
pub struct Ctx {
    pub config: Arc<Config>,
    pub auth: Arc<Auth>,
    /// For STARTTLS; `None` when no certificate is configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Told when QUIT changed the maildrop (IMAP sessions look).
    pub notify: Arc<crate::store::notify::Notifier>,
}
