//! The echo service on tarpc: bincode (tokio-serde) over a length-delimited TCP transport.

use std::io;
use std::net::SocketAddr;

use futures::StreamExt;
use tarpc::context::Context;
use tarpc::serde_transport;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio::net::{TcpListener, TcpStream};

/// The tarpc service definition; the macro generates `EchoClient` and `ServeEcho`.
#[tarpc::service]
pub trait Echo {
    /// Returns `payload` unchanged.
    async fn echo(payload: Vec<u8>) -> Vec<u8>;
}

/// The server implementation: hands the payload back.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoImpl;

impl Echo for EchoImpl {
    async fn echo(self, _: Context, payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

fn codec(stream: TcpStream) -> Framed<TcpStream, LengthDelimitedCodec> {
    let mut codec = LengthDelimitedCodec::new();
    codec.set_max_frame_length(usize::MAX);
    Framed::new(stream, codec)
}

/// Binds `addr`; the returned future accepts connections and serves each with every
/// request on its own task (tarpc's recommended setup).
pub async fn serve(addr: &str) -> io::Result<(SocketAddr, impl Future<Output = ()> + Send)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let accept = async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let transport = serde_transport::new(codec(stream), Bincode::default());
            tokio::spawn(
                BaseChannel::with_defaults(transport)
                    .execute(EchoImpl.serve())
                    .for_each(|response| async move {
                        tokio::spawn(response);
                    }),
            );
        }
    };
    Ok((local, accept))
}

/// Opens one connection to `addr` and returns a client over it (clones share it).
pub async fn connect(addr: SocketAddr) -> io::Result<EchoClient> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let transport = serde_transport::new(codec(stream), Bincode::default());
    Ok(EchoClient::new(tarpc::client::Config::default(), transport).spawn())
}
