//! The answer on listeners whose protocol this build does not serve yet: a
//! protocol-correct *temporary* refusal, so senders retry later and clients
//! show a clear message instead of hanging. Replaced protocol by protocol.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::{BoxFuture, Conn, Handler, Refusal};
use crate::config::{Listener, Protocol};

pub struct Pending {
    greeting: Vec<u8>,
    refusal_prefix: &'static str,
}

impl Pending {
    pub fn for_listener(listener: Listener, hostname: &str) -> Self {
        let name = listener.name();
        let (greeting, refusal_prefix) = match listener.protocol() {
            Protocol::Smtp | Protocol::Lmtp | Protocol::Http => (
                format!(
                    "421 4.3.2 {hostname} {name} service not available yet, try again later\r\n"
                ),
                "421 4.7.0",
            ),
            Protocol::Imap => (
                "* BYE [UNAVAILABLE] IMAP service not available yet\r\n".to_string(),
                "* BYE [UNAVAILABLE]",
            ),
            Protocol::Pop3 => (
                "-ERR [SYS/TEMP] POP3 service not available yet\r\n".to_string(),
                "-ERR [SYS/TEMP]",
            ),
        };
        Pending {
            greeting: greeting.into_bytes(),
            refusal_prefix,
        }
    }
}

impl Handler for Pending {
    fn handle(self: Arc<Self>, mut conn: Conn) -> BoxFuture {
        Box::pin(async move {
            let _ = conn.stream.write_all(&self.greeting).await;
            let _ = conn.stream.shutdown().await;
        })
    }

    fn refusal(&self, why: Refusal, client: IpAddr) -> Vec<u8> {
        refusal_line(self.refusal_prefix, why, client)
    }
}

pub fn refusal_line(prefix: &str, why: Refusal, client: IpAddr) -> Vec<u8> {
    format!("{prefix} {}\r\n", why.text(client)).into_bytes()
}
