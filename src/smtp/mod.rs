//! SMTP: the sans-IO session (`proto`), the connection driver (`inbound`),
//! recipient routing (`router`), taking responsibility for accepted mail
//! (`accept`), the outbound queue (`queue`) and the SMTP client (`outbound`).

pub mod accept;
pub mod inbound;
pub mod milter;
pub mod outbound;
pub mod proto;
pub mod queue;
pub mod received;
pub mod restrict;
pub mod router;
pub mod screen;

use std::sync::Arc;

use crate::auth::Auth;
use crate::config::Config;
use crate::tables::Tables;

/// What the SMTP server, local delivery and the queue use of the server's
/// state, built by `server.rs`.
pub struct Ctx {
    pub config: Arc<Config>,
    pub tables: Arc<Tables>,
    pub auth: Arc<Auth>,
    /// For STARTTLS; `None` when no certificate is configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub queue: Arc<queue::Queue>,
    /// Told about every mailbox a delivery wrote to (IMAP sessions look).
    pub notify: Arc<crate::store::notify::Notifier>,
    /// SPF/DKIM/DMARC checks of mail from outside, DKIM signing of ours.
    pub mail_auth: Arc<crate::mailauth::MailAuth>,
    /// Postfix's anvil rate limits (messages, recipients, AUTH, TLS).
    pub anvil: Arc<crate::net::anvil::Anvil>,
    /// DNS lists, host checks and policy services of the restrictions.
    pub restrict: Arc<restrict::Checker>,
}
