//! RFC 4978 COMPRESS=DEFLATE: raw DEFLATE (RFC 1951) both ways over an
//! existing connection (plain or TLS). Every flush of the writer ends with
//! a sync flush, so each response reaches the client whole: a reader that
//! waits for a response must never wait for bytes the compressor holds.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Stream;

pub struct Deflate {
    inner: Stream,
    compress: Compress,
    decompress: Decompress,
    /// Compressed bytes read from the client, not yet inflated.
    incoming: Vec<u8>,
    /// Compressed bytes for the client, not yet written.
    outgoing: Vec<u8>,
    /// Data was written since the last sync flush.
    unflushed: bool,
}

/// Largest compressed input buffered from the client at once.
const READ_CHUNK: usize = 16 * 1024;

impl Deflate {
    pub fn new(inner: Stream) -> Self {
        Deflate {
            inner,
            // Level 1: mail text still shrinks several times, at a fraction
            // of level 6's CPU (Dovecot's default): a client on a fast link
            // that asks for compression (mbsync does) must not find the
            // server's CPU the bottleneck of a full sync.
            compress: Compress::new(Compression::fast(), false),
            decompress: Decompress::new(false),
            incoming: Vec::new(),
            outgoing: Vec::new(),
            unflushed: false,
        }
    }

    pub fn inner(&self) -> &Stream {
        &self.inner
    }

    fn deflate(&mut self, data: &[u8], flush: FlushCompress) -> io::Result<()> {
        let mut input = data;
        loop {
            self.outgoing.reserve(input.len() / 2 + 64);
            let before_in = self.compress.total_in();
            let before_out = self.outgoing.len();
            self.compress
                .compress_vec(input, &mut self.outgoing, flush)
                .map_err(io::Error::other)?;
            let used = (self.compress.total_in() - before_in) as usize;
            input = &input[used..];
            let produced = self.outgoing.len() - before_out;
            // Done when all input is taken and the output had room to spare
            // (a full buffer may mean the flush marker is still to come).
            if input.is_empty() && self.outgoing.len() < self.outgoing.capacity() {
                return Ok(());
            }
            if used == 0 && produced == 0 && self.outgoing.len() < self.outgoing.capacity() {
                return Ok(());
            }
        }
    }

    /// Writes what is pending to the connection.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.outgoing.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.outgoing))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.outgoing.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Deflate {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Inflate what has come; the inflater may also still hold output
            // of input it took earlier (a client's burst of pipelined
            // commands inflates to far more than one read buffer), so this
            // runs even when nothing new has arrived.
            let before_in = this.decompress.total_in();
            let before_out = this.decompress.total_out();
            let status = this
                .decompress
                .decompress(
                    &this.incoming,
                    buf.initialize_unfilled(),
                    FlushDecompress::Sync,
                )
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let used = (this.decompress.total_in() - before_in) as usize;
            let produced = (this.decompress.total_out() - before_out) as usize;
            this.incoming.drain(..used);
            buf.advance(produced);
            if produced > 0 || status == Status::StreamEnd {
                return Poll::Ready(Ok(()));
            }
            if used > 0 {
                continue;
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.incoming.extend_from_slice(rb.filled());
        }
    }
}

impl AsyncWrite for Deflate {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Bounded: compressed output waits only for the client to read it.
        if this.outgoing.len() >= READ_CHUNK * 4 {
            ready!(this.poll_drain(cx))?;
        }
        this.deflate(buf, FlushCompress::None)?;
        this.unflushed = true;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unflushed {
            this.deflate(&[], FlushCompress::Sync)?;
            this.unflushed = false;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unflushed {
            this.deflate(&[], FlushCompress::Sync)?;
            this.unflushed = false;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_flush_makes_everything_written_so_far_readable() {
        let mut d = Deflate::new(Stream::Closed);
        d.deflate(b"* OK hello\r\n", FlushCompress::None).unwrap();
        d.deflate(&[], FlushCompress::Sync).unwrap();
        let mut inflate = Decompress::new(false);
        let mut out = Vec::with_capacity(100);
        inflate
            .decompress_vec(&d.outgoing, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, b"* OK hello\r\n");
        assert!(d.outgoing.ends_with(&[0, 0, 0xff, 0xff]), "sync marker");
    }

    #[test]
    fn large_writes_compress_whole() {
        let mut d = Deflate::new(Stream::Closed);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        d.deflate(&data, FlushCompress::None).unwrap();
        d.deflate(&[], FlushCompress::Sync).unwrap();
        let mut inflate = Decompress::new(false);
        let mut out = Vec::with_capacity(data.len() + 10);
        inflate
            .decompress_vec(&d.outgoing, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, data);
    }
}
