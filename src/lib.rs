//! pigeonpost: one binary that does the job of Postfix + Dovecot.
//! See ARCHITECTURE.md for the map of modules, their layers and the
//! compatibility contract; `main.rs` is only the CLI.

pub mod acme;
pub mod admin;
pub mod auth;
pub mod config;
pub mod dev;
pub mod imap;
pub mod mailauth;
pub mod net;
pub mod observe;
pub mod pop3;
pub mod server;
pub mod smtp;
pub mod store;
pub mod tables;
pub mod tls;
pub mod wire;
