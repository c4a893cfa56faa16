//! The echo service of [`crate::rpc_echo`] over TLS (rustls) on our TCP and HTTP/2
//! transports, to measure what TLS costs against the plain systems. The load generator
//! makes a CA and a server certificate once ([`make_certificates`]) and hands the folder
//! to its server process in [`DIR_VARIABLE`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use transports::tls::{ClientTls, ServerTls};

use crate::rpc_echo::{EchoClient, EchoImpl, EchoServer, h2_transport, tcp_transport};

/// The variable naming the folder with `ca.crt`, `server.crt` and `server.key`.
pub const DIR_VARIABLE: &str = "RPC_BENCH_TLS_DIR";

/// Which of our transports carries the calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// The long-connection TCP protocol.
    Tcp,
    /// HTTP/2 (gRPC).
    Http2,
}

/// Writes a fresh CA (`ca.crt`) and a server certificate for `127.0.0.1` signed by it
/// (`server.crt`, `server.key`) into `dir`.
pub fn make_certificates(dir: &Path) -> Result<(), String> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let failed = |e: rcgen::Error| format!("making certificates: {e}");
    let ca_key = KeyPair::generate().map_err(failed)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).map_err(failed)?;
    let key = KeyPair::generate().map_err(failed)?;
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .map_err(failed)?
        .signed_by(&key, &ca, &ca_key)
        .map_err(failed)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, pem) in [
        ("ca.crt", ca.pem()),
        ("server.crt", leaf.pem()),
        ("server.key", key.serialize_pem()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The folder [`DIR_VARIABLE`] names.
pub fn dir_from_env() -> Result<PathBuf, String> {
    std::env::var_os(DIR_VARIABLE)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{DIR_VARIABLE} is not set"))
}

/// Binds `addr` and serves [`EchoImpl`] over TLS with the certificate in `dir`; the
/// returned future runs the server.
pub async fn serve(
    addr: &str,
    wire: Wire,
    dir: &Path,
) -> rpc_core::Result<(SocketAddr, impl Future<Output = ()> + Send)> {
    let builder = rpc_core::Server::builder().add_service(EchoServer::new(EchoImpl));
    let builder = match wire {
        Wire::Tcp => builder.transport(tcp_transport().with_server_tls(
            ServerTls::from_pem_files(dir.join("server.crt"), dir.join("server.key"))?,
        )?),
        Wire::Http2 => builder.transport(h2_transport().with_server_tls(
            ServerTls::from_pem_files(dir.join("server.crt"), dir.join("server.key"))?,
        )?),
    };
    let server = builder.bind(addr).await?;
    let local = server.local_addr();
    Ok((local, server.run_until(std::future::pending())))
}

/// A client of the echo service at `addr` over TLS, trusting the CA in `dir`: one
/// connection shared by all clones, bincode, 5 s timeout (as [`crate::rpc_echo::client`]).
pub fn client(addr: SocketAddr, wire: Wire, dir: &Path) -> rpc_core::Result<EchoClient> {
    let tls = ClientTls::new().ca_file(dir.join("ca.crt"))?;
    let builder = EchoClient::builder();
    let builder = match wire {
        Wire::Tcp => builder.transport(tcp_transport().with_client_tls(tls)?),
        Wire::Http2 => builder.transport(h2_transport().with_client_tls(tls)?),
    };
    builder
        .address(addr.to_string())
        .codec(rpc_core::Codec::Bincode)
        .timeout(Duration::from_secs(5))
        .build()
}
