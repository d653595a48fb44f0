//! The one integration-test binary (ripgrep style): every module here runs
//! the real `pigeonpost` binary or talks to it over real sockets.

mod acme;
mod architecture;
mod auth;
mod autoconfig;
mod cli;
mod crash;
mod dns;
mod imap;
mod imap_stress;
mod import;
mod limits;
mod mailauth;
mod milter;
mod pop3;
mod proxy;
mod queue;
mod quota;
mod reload;
mod restrict;
mod serve;
mod smtp;
mod tls;
mod users;
mod util;
