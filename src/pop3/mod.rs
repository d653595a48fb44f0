//! POP3 (RFC 1939) on 110 with STLS and 995 with implicit TLS, over the
//! Dovecot-compatible Maildir store: the same UIDLs as Dovecot, so clients
//! moving over download nothing twice.

pub mod proto;
pub mod session;
