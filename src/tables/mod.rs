//! Postfix lookup tables, aliases(5) and Dovecot passwd-files, read as text
//! and reloaded when they change.

pub mod reload;
