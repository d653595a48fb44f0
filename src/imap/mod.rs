//! IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051): the sans-IO session
//! (`proto`), the connection driver (`session`), the commands on the mail
//! store (`backend`), FETCH rendering (`fetch`), the per-mailbox structure
//! cache (`cache`), SEARCH evaluation (`search`) and IDLE's wake-ups
//! (`watch`). The grammar is
//! imap-codec's.

pub mod backend;
pub mod cache;
pub mod fetch;
pub mod proto;
pub mod search;
pub mod session;
pub mod watch;
