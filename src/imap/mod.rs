//! IMAP4rev1 (RFC 3501) / IMAP4rev2 (RFC 9051): message rendering for FETCH
//! (`fetch`), SEARCH evaluation (`search`). The grammar is imap-codec's.

pub mod fetch;
pub mod proto;
pub mod search;
