//! TCP to the broker through tokio, as the link's [`Connector`].

use std::net::SocketAddr;

use embedded_io_adapters::tokio_1::FromTokio;
use tokio::{io::BufStream, net::TcpStream};

use crate::link::Connector;

/// Opens a fresh TCP connection to one broker address for each session.
#[derive(Debug, Clone, Copy)]
pub struct TokioConnector {
    broker: SocketAddr,
}

impl TokioConnector {
    /// A connector to `broker`.
    pub fn new(broker: SocketAddr) -> Self {
        Self { broker }
    }
}

impl Connector for TokioConnector {
    // Buffered: rust-mqtt writes a packet in many small pieces and flushes at its end,
    // which would otherwise be one syscall (and with Nagle off, one segment) per piece.
    type Conn<'a> = FromTokio<BufStream<TcpStream>>;
    type Error = std::io::Error;

    async fn connect(&mut self) -> Result<Self::Conn<'_>, Self::Error> {
        let stream = TcpStream::connect(self.broker).await?;
        stream.set_nodelay(true)?;
        Ok(FromTokio::new(BufStream::new(stream)))
    }
}
