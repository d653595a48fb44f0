//! IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051): the sans-IO session
//! (`proto`), the connection driver (`session`), the commands on the mail
//! store (`backend`), the message library behind FETCH (`message`: MIME
//! tree, ENVELOPE, BODYSTRUCTURE, sections), the per-mailbox structure
//! cache (`cache`), SEARCH evaluation (`search`) and SORT/THREAD ordering
//! (`sort`). IDLE's wake-ups come
//! from the server's `store::notify::Notifier`. The grammar is imap-codec's.

pub mod backend;
pub mod cache;
pub mod keys;
pub mod message;
pub mod proto;
pub mod search;
pub mod session;
pub mod sort;

use std::sync::Arc;

use crate::auth::Auth;
use crate::config::Config;

/// What IMAP sessions use of the server's state, built by `server.rs`.
pub struct Ctx {
    pub config: Arc<Config>,
    pub auth: Arc<Auth>,
    /// For STARTTLS; `None` when no certificate is configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The server's open mailboxes (and through them its change notifier).
    pub mailboxes: Arc<backend::Mailboxes>,
}
