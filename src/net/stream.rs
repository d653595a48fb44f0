//! A client connection that is either plain TCP or TLS, so protocol
//! sessions can upgrade in place for STARTTLS/STLS.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// RFC 4978 COMPRESS=DEFLATE over a plain or TLS stream.
    Deflate(Box<super::deflate::Deflate>),
    /// Taken out for a TLS upgrade that failed; every operation errors.
    Closed,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        match self {
            Stream::Tls(_) => true,
            Stream::Deflate(d) => d.inner().is_tls(),
            _ => false,
        }
    }

    pub fn is_compressed(&self) -> bool {
        matches!(self, Stream::Deflate(_))
    }

    /// COMPRESS DEFLATE: from now on both directions are compressed.
    pub fn start_deflate(&mut self) {
        let inner = std::mem::replace(self, Stream::Closed);
        *self = Stream::Deflate(Box::new(super::deflate::Deflate::new(inner)));
    }

    /// Writes (and flushes) all of `data` within `timeout`; false if the
    /// client is gone or too slow to take it.
    pub async fn send(&mut self, data: &[u8], timeout: std::time::Duration) -> bool {
        use tokio::io::AsyncWriteExt;
        let write = async {
            self.write_all(data).await?;
            self.flush().await
        };
        matches!(tokio::time::timeout(timeout, write).await, Ok(Ok(())))
    }

    /// STARTTLS (SMTP, IMAP) and STLS (POP3): this plaintext stream becomes
    /// TLS, the handshake bounded by `timeout`. On failure the stream is
    /// closed and the reason returned, for the log.
    pub async fn start_tls(
        &mut self,
        config: Arc<rustls::ServerConfig>,
        timeout: std::time::Duration,
    ) -> Result<(), String> {
        let plain = std::mem::replace(self, Stream::Closed);
        match tokio::time::timeout(timeout, plain.upgrade(config)).await {
            Ok(Ok(tls)) => {
                *self = tls;
                Ok(())
            }
            Ok(Err(e)) => Err(format!("handshake failed: {e}")),
            Err(_) => Err("handshake timed out".into()),
        }
    }

    /// Performs a server-side TLS handshake on a plain stream (STARTTLS).
    pub async fn upgrade(self, config: Arc<rustls::ServerConfig>) -> io::Result<Stream> {
        match self {
            Stream::Plain(tcp) => {
                let tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
                Ok(Stream::Tls(Box::new(tls)))
            }
            Stream::Tls(_) => Err(io::Error::other("TLS is already active")),
            Stream::Deflate(_) => Err(io::Error::other("compression is active")),
            Stream::Closed => Err(closed()),
        }
    }

    /// The negotiated TLS version and cipher suite, for Received: headers and logs.
    pub fn tls_description(&self) -> Option<String> {
        match self {
            Stream::Plain(_) | Stream::Closed => None,
            Stream::Deflate(d) => d.inner().tls_description(),
            Stream::Tls(tls) => {
                let (_, conn) = tls.get_ref();
                let version = conn
                    .protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default();
                let suite = conn
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()))
                    .unwrap_or_default();
                Some(format!("{version} {suite}").trim().to_string())
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Deflate(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Deflate(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
            Stream::Deflate(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Deflate(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Deflate(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Deflate(_) => false,
            Stream::Closed => false,
        }
    }
}
