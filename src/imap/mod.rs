//! IMAP4rev1 (RFC 3501): the sans-IO session (`proto`), the connection
//! driver (`session`), the commands on the mail store (`backend`), FETCH
//! rendering (`fetch`) and SEARCH evaluation (`search`). The grammar is
//! imap-codec's.

pub mod backend;
pub mod fetch;
pub mod proto;
pub mod search;
pub mod session;
