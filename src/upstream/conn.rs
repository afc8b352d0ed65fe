//! One connection to an upstream server: plain TCP or TLS (`https://` servers). Both speak
//! monoio's owned-buffer traits, so the exchange in `forward` does not care which it has.

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;
use std::io;

use crate::tls::ClientStream;
use crate::tunnel::RelayEnd;

pub enum UpstreamConn {
    Plain(TcpStream),
    /// Boxed: the rustls state is large, and pools mostly hold plain connections.
    Tls(Box<ClientStream>),
}

impl UpstreamConn {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            UpstreamConn::Plain(s) => s,
            UpstreamConn::Tls(s) => s.tcp(),
        }
    }
}

impl AsyncReadRent for UpstreamConn {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamConn::Plain(s) => s.read(buf).await,
            UpstreamConn::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamConn::Plain(s) => s.readv(buf).await,
            UpstreamConn::Tls(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for UpstreamConn {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamConn::Plain(s) => s.write(buf).await,
            UpstreamConn::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamConn::Plain(s) => s.writev(buf).await,
            UpstreamConn::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            UpstreamConn::Plain(s) => s.flush().await,
            UpstreamConn::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            UpstreamConn::Plain(s) => s.shutdown().await,
            UpstreamConn::Tls(s) => s.shutdown().await,
        }
    }
}

impl RelayEnd for UpstreamConn {
    fn socket(&self) -> &TcpStream {
        self.tcp()
    }

    fn buffered(&self) -> bool {
        match self {
            UpstreamConn::Plain(_) => false,
            UpstreamConn::Tls(s) => s.buffered(),
        }
    }

    fn try_read(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            UpstreamConn::Plain(s) => s.try_read(buf),
            UpstreamConn::Tls(s) => s.try_read(buf),
        }
    }

    fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            UpstreamConn::Plain(s) => s.try_write(data),
            UpstreamConn::Tls(s) => RelayEnd::try_write(&**s, data),
        }
    }

    fn try_flush(&self) -> io::Result<()> {
        match self {
            UpstreamConn::Plain(_) => Ok(()),
            UpstreamConn::Tls(s) => RelayEnd::try_flush(&**s),
        }
    }

    fn try_close_write(&self) -> io::Result<()> {
        match self {
            UpstreamConn::Plain(s) => s.try_close_write(),
            UpstreamConn::Tls(s) => s.try_close_write(),
        }
    }
}
