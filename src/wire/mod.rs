//! Byte-level helpers for the text protocols, shared by SMTP, POP3 and
//! IMAP: dot-stuffing with CRLF line endings (the DATA of the SMTP client,
//! POP3's RETR and TOP) and LF → CRLF conversion of stored messages. Pure
//! functions on bytes; no protocol state.

pub mod dotstuff;

pub use dotstuff::DotStuffer;
