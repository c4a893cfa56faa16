//! A userspace TCP relay that can hurt the connections it carries: the network faults of
//! `scripts/chaos.sh` (scenario `netfault`) and of `examples/tests/netfault.rs`.
//!
//! It listens on an address, and forwards every connection it accepts to one target, byte
//! for byte, in the [`Mode`] it is switched to: [`Mode::Pass`], [`Mode::Delay`],
//! [`Mode::Stall`] (nothing forwarded either way, sockets left open: the peer sees a
//! connection that is up and silent, which only a heartbeat or an idle timeout catches) or
//! [`Mode::Drop`] (every connection closed, new ones closed at once).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use examples::relay::{Mode, Relay};
//! let relay = Relay::start("127.0.0.1:0", "127.0.0.1:20880").await?;
//! println!("call {} instead", relay.local_addr());
//! relay.set_mode(Mode::Stall);
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Bytes a stalled direction reads and holds at most; past it, it stops reading and the
/// kernel's buffers fill, as on a dead link.
const MAX_HELD: usize = 1 << 20;
/// How long the relay tries to reach the target for an accepted connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the relay does with the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards every byte as it comes.
    Pass,
    /// Forwards every chunk read after this delay.
    Delay(Duration),
    /// Forwards nothing in either direction and keeps the sockets open. Bytes read are held
    /// (up to 1 MiB per direction) and forwarded once the mode passes again; a peer that
    /// closes is still noticed.
    Stall,
    /// Closes every connection, and every new one as soon as it is accepted.
    Drop,
}

impl std::str::FromStr for Mode {
    type Err = String;

    /// `pass`, `stall`, `drop` or `delay MS`.
    fn from_str(text: &str) -> Result<Mode, String> {
        let mut words = text.split_whitespace();
        let mode = match (words.next(), words.next()) {
            (Some("pass"), None) => Mode::Pass,
            (Some("stall"), None) => Mode::Stall,
            (Some("drop"), None) => Mode::Drop,
            (Some("delay"), Some(ms)) => Mode::Delay(Duration::from_millis(
                ms.parse().map_err(|e| format!("delay {ms}: {e}"))?,
            )),
            _ => return Err(format!("{text:?}: expected pass, stall, drop or delay MS")),
        };
        if words.next().is_some() {
            return Err(format!("{text:?}: expected pass, stall, drop or delay MS"));
        }
        Ok(mode)
    }
}

/// Which end closed a relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// The side that connected to the relay (the consumer).
    Client,
    /// The target (the provider), or the relay could not reach it.
    Target,
    /// The relay, in [`Mode::Drop`].
    Relay,
}

/// Something that happened to a relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Connection `id` was accepted.
    Accepted {
        /// Its number, from 1.
        id: u64,
    },
    /// Connection `id` closed.
    Closed {
        /// Its number.
        id: u64,
        /// Which end closed it.
        by: Closer,
        /// The relay's mode when it closed.
        mode: Mode,
    },
}

/// A running relay; it stops (closing its connections) when dropped.
#[derive(Debug)]
pub struct Relay {
    local_addr: SocketAddr,
    mode: watch::Sender<Mode>,
    events: broadcast::Sender<Event>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Listens on `listen` (say `127.0.0.1:0`) and forwards each connection to `target`,
    /// in [`Mode::Pass`].
    pub async fn start(listen: &str, target: &str) -> std::io::Result<Relay> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::Pass);
        let (events, _) = broadcast::channel(4096);
        let accept = tokio::spawn(accept_loop(
            listener,
            target.to_owned(),
            mode.clone(),
            events.clone(),
        ));
        Ok(Relay {
            local_addr,
            mode,
            events,
            accept,
        })
    }

    /// The address to connect to instead of the target.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Switches every connection, open or to come, to `mode`.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Events from now on: connections accepted and closed.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        // Connections end when they see the mode channel close.
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: String,
    mode: watch::Sender<Mode>,
    events: broadcast::Sender<Event>,
) {
    let ids = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors and the like: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let id = ids.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = events.send(Event::Accepted { id });
        let (mode, events, target) = (mode.subscribe(), events.clone(), target.clone());
        tokio::spawn(async move {
            let by = relay_one(client, &target, mode.clone()).await;
            let _ = events.send(Event::Closed {
                id,
                by,
                mode: *mode.borrow(),
            });
        });
    }
}

/// Carries one connection until either end closes it or the relay drops it.
async fn relay_one(client: TcpStream, target: &str, mode: watch::Receiver<Mode>) -> Closer {
    if *mode.borrow() == Mode::Drop {
        return Closer::Relay;
    }
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(upstream)) => upstream,
        _ => return Closer::Target,
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    // Either end closing closes both: the peers here close whole connections, never half.
    tokio::select! {
        end = pump(client_read, upstream_write, mode.clone()) => end.unwrap_or(Closer::Client),
        end = pump(upstream_read, client_write, mode) => end.unwrap_or(Closer::Target),
    }
}

/// Copies `from` to `to` in the relay's mode. `None` when `from` closed (or failed),
/// `Some(Closer::Relay)` when the relay dropped the connection.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) -> Option<Closer> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut held: Vec<u8> = Vec::new();
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Drop => return Some(Closer::Relay),
            Mode::Pass | Mode::Delay(_) if !held.is_empty() => {
                if let Mode::Delay(delay) = current {
                    tokio::time::sleep(delay).await;
                }
                if to.write_all(&held).await.is_err() {
                    return None;
                }
                held.clear();
                continue;
            }
            Mode::Stall if held.len() >= MAX_HELD => {
                if mode.changed().await.is_err() {
                    return Some(Closer::Relay);
                }
                continue;
            }
            _ => {}
        }
        // Reading goes on while stalled so that a peer closing is seen; what is read waits
        // in `held` until the mode passes again.
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => held.extend_from_slice(&buf[..n]),
            },
            changed = mode.changed() => if changed.is_err() {
                return Some(Closer::Relay);
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!("pass".parse(), Ok(Mode::Pass));
        assert_eq!(" stall ".parse(), Ok(Mode::Stall));
        assert_eq!("drop".parse(), Ok(Mode::Drop));
        assert_eq!(
            "delay 25".parse(),
            Ok(Mode::Delay(Duration::from_millis(25)))
        );
        assert!("delay".parse::<Mode>().is_err());
        assert!("delay x".parse::<Mode>().is_err());
        assert!("stall 3".parse::<Mode>().is_err());
        assert!("".parse::<Mode>().is_err());
    }

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.into_split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn round_trip(socket: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        socket.write_all(bytes).await?;
        let mut back = vec![0u8; bytes.len()];
        socket.read_exact(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn passes_stalls_and_passes_again() {
        let target = echo_server().await;
        let relay = Relay::start("127.0.0.1:0", &target.to_string())
            .await
            .unwrap();
        let mut socket = TcpStream::connect(relay.local_addr()).await.unwrap();
        assert_eq!(round_trip(&mut socket, b"one").await.unwrap(), b"one");

        relay.set_mode(Mode::Stall);
        let stalled =
            tokio::time::timeout(Duration::from_millis(300), round_trip(&mut socket, b"two")).await;
        assert!(stalled.is_err(), "a stalled relay forwarded bytes");

        // What was held comes through once the relay passes again.
        relay.set_mode(Mode::Pass);
        let mut back = [0u8; 3];
        tokio::time::timeout(Duration::from_secs(10), socket.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"two");

        relay.set_mode(Mode::Delay(Duration::from_millis(100)));
        let started = std::time::Instant::now();
        assert_eq!(round_trip(&mut socket, b"three").await.unwrap(), b"three");
        // One delay each way.
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn drop_closes_connections_and_stall_sees_a_client_close() {
        let target = echo_server().await;
        let relay = Relay::start("127.0.0.1:0", &target.to_string())
            .await
            .unwrap();
        let mut events = relay.subscribe();
        let mut socket = TcpStream::connect(relay.local_addr()).await.unwrap();
        assert_eq!(round_trip(&mut socket, b"hi").await.unwrap(), b"hi");
        relay.set_mode(Mode::Drop);
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut byte))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "still open: {read:?}");
        assert_eq!(events.recv().await.unwrap(), Event::Accepted { id: 1 });
        assert_eq!(
            events.recv().await.unwrap(),
            Event::Closed {
                id: 1,
                by: Closer::Relay,
                mode: Mode::Drop
            }
        );

        relay.set_mode(Mode::Stall);
        let socket = TcpStream::connect(relay.local_addr()).await.unwrap();
        assert_eq!(events.recv().await.unwrap(), Event::Accepted { id: 2 });
        drop(socket);
        let closed = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            closed,
            Event::Closed {
                id: 2,
                by: Closer::Client,
                mode: Mode::Stall
            }
        );
    }
}
