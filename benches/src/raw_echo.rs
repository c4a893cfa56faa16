//! The ceiling the RPC systems are measured against: the same pipelined echo on bare tokio,
//! with no framework at all.
//!
//! A frame is `u32` length (big endian, of what follows) + `u64` request id + payload.
//! The server hands every frame back unchanged; the client sends calls from any number
//! of tasks over one connection and matches answers to callers by id, so it does the
//! least any multiplexed RPC client must: frame, batch writes, route responses.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Largest frame (id + payload) either side reads; a longer declared length closes the
/// connection before anything is allocated for it.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// How long a call waits for its answer, as the other systems' clients (5 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of the length prefix and of the request id.
const LEN_LEN: usize = 4;
const ID_LEN: usize = 8;

/// Once this much is batched, the client's writer sends it before taking more calls.
const WRITE_BATCH: usize = 256 * 1024;

/// The whole length (prefix included) of the frame `bytes` starts with, once its prefix
/// is there; an error for a declared length out of bounds.
fn frame_len(bytes: &[u8]) -> io::Result<Option<usize>> {
    let Some(mut prefix) = bytes.get(..LEN_LEN) else {
        return Ok(None);
    };
    let len = prefix.get_u32() as usize;
    if !(ID_LEN..=MAX_FRAME_LEN).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len} outside {ID_LEN}..={MAX_FRAME_LEN}"),
        ));
    }
    Ok(Some(LEN_LEN + len))
}

/// Where the complete frames at the start of `buf` end, and how many more bytes the
/// partial frame after them needs.
fn complete_frames(buf: &[u8]) -> io::Result<(usize, usize)> {
    let mut ready = 0;
    while let Some(len) = frame_len(&buf[ready..])? {
        let have = buf.len() - ready;
        if have < len {
            return Ok((ready, len - have));
        }
        ready += len;
    }
    Ok((ready, 0))
}

/// Room for the next read: the rest of a partial frame, or a read's worth.
const READ_SIZE: usize = 64 * 1024;

/// Binds `addr`; the returned future accepts connections and echoes every frame on each.
pub async fn serve(addr: &str) -> io::Result<(SocketAddr, impl Future<Output = ()> + Send)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let accept = async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if let Err(error) = echo_connection(stream).await
                    && error.kind() != io::ErrorKind::UnexpectedEof
                {
                    eprintln!("raw server: connection closed: {error}");
                }
            });
        }
    };
    Ok((local, accept))
}

/// Reads whatever has arrived and writes back every complete frame in it with one write:
/// the frames are split off the read buffer, not copied.
async fn echo_connection(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return match buf.is_empty() {
                true => Ok(()),
                false => Err(io::ErrorKind::UnexpectedEof.into()),
            };
        }
        let (ready, missing) = complete_frames(&buf)?;
        if ready > 0 {
            let out = buf.split_to(ready);
            stream.write_all(&out).await?;
        }
        // With `out` gone, this reuses the allocation when the partial frame fits.
        buf.reserve(missing.max(READ_SIZE));
    }
}

/// A waiting caller per request id; `None` once the connection is gone.
type Pending = Mutex<Option<HashMap<u64, oneshot::Sender<Vec<u8>>>>>;

/// A client of the raw echo server: one connection shared by all clones, any number of
/// calls in flight on it.
#[derive(Clone, Debug)]
pub struct Client {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    next_id: AtomicU64,
    pending: Pending,
    requests: mpsc::UnboundedSender<(u64, Vec<u8>)>,
}

impl Client {
    /// Opens one connection to `addr` and starts its writer and reader tasks.
    pub async fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let (requests, queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(0),
            pending: Mutex::new(Some(HashMap::new())),
            requests,
        });
        tokio::spawn(write_requests(write, queue));
        tokio::spawn(read_responses(read, shared.clone()));
        Ok(Client { shared })
    }

    /// Sends `payload` and returns what the server echoed.
    pub async fn echo(&self, payload: Vec<u8>) -> io::Result<Vec<u8>> {
        let closed = || io::Error::from(io::ErrorKind::ConnectionAborted);
        if payload.len() > MAX_FRAME_LEN - ID_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("payload of {} bytes exceeds the frame limit", payload.len()),
            ));
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, response) = oneshot::channel();
        self.lock().as_mut().ok_or_else(closed)?.insert(id, answer);
        if self.shared.requests.send((id, payload)).is_err() {
            self.forget(id);
            return Err(closed());
        }
        match tokio::time::timeout(CALL_TIMEOUT, response).await {
            Ok(Ok(payload)) => Ok(payload),
            Ok(Err(_)) => Err(closed()),
            Err(_) => {
                self.forget(id);
                Err(io::ErrorKind::TimedOut.into())
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<u64, oneshot::Sender<Vec<u8>>>>> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn forget(&self, id: u64) {
        if let Some(pending) = self.lock().as_mut() {
            pending.remove(&id);
        }
    }
}

/// Takes every request queued by the time it wakes, up to [`WRITE_BATCH`] bytes, and
/// writes them with one `write_all`.
async fn write_requests(
    mut write: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<(u64, Vec<u8>)>,
) {
    let mut batch = BytesMut::with_capacity(64 * 1024);
    while let Some(mut request) = queue.recv().await {
        loop {
            let (id, payload) = request;
            // Bounded by `echo` to MAX_FRAME_LEN, which fits a u32.
            let len = u32::try_from(ID_LEN + payload.len()).unwrap_or(u32::MAX);
            batch.reserve(LEN_LEN + ID_LEN + payload.len());
            batch.put_u32(len);
            batch.put_u64(id);
            batch.put_slice(&payload);
            if batch.len() >= WRITE_BATCH {
                break;
            }
            match queue.try_recv() {
                Ok(next) => request = next,
                Err(_) => break,
            }
        }
        if write.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
}

/// Hands every response to its caller; when the connection ends, fails every waiting
/// call (by dropping its sender) and every later one.
async fn read_responses(mut read: OwnedReadHalf, shared: Arc<Shared>) {
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    loop {
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let (ready, missing) = match complete_frames(&buf) {
            Ok(found) => found,
            Err(error) => {
                eprintln!("raw client: {error}");
                break;
            }
        };
        let mut frames = buf.split_to(ready);
        while frames.has_remaining() {
            let len = frames.get_u32() as usize;
            let id = frames.get_u64();
            let payload = frames.split_to(len - ID_LEN);
            let waiter = shared
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
                .and_then(|pending| pending.remove(&id));
            // A caller that timed out is gone; its late answer is dropped.
            if let Some(waiter) = waiter {
                let _ = waiter.send(payload.to_vec());
            }
        }
        drop(frames);
        buf.reserve(missing.max(READ_SIZE));
    }
    shared
        .pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_calls_get_their_own_payloads_back() {
        let (addr, serve) = serve("127.0.0.1:0").await.unwrap();
        tokio::spawn(serve);
        let client = Client::connect(addr).await.unwrap();
        let calls: Vec<_> = (0..64u32)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let payload: Vec<u8> = (0..i * 1000).map(|b| (b % 251) as u8).collect();
                    let echoed = client.echo(payload.clone()).await.unwrap();
                    assert_eq!(echoed, payload);
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
    }

    #[tokio::test]
    async fn the_server_closes_a_connection_declaring_an_oversized_frame() {
        let (addr, serve) = serve("127.0.0.1:0").await.unwrap();
        tokio::spawn(serve);
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let too_long = u32::try_from(MAX_FRAME_LEN + 1).unwrap();
        stream.write_all(&too_long.to_be_bytes()).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .expect("the server closes the connection");
        assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
    }

    #[tokio::test]
    async fn calls_fail_once_the_server_is_gone() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = Client::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.echo(vec![1, 2, 3]).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(stream);
        let error = call.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
        let later = client.echo(vec![4]).await.unwrap_err();
        assert_eq!(later.kind(), io::ErrorKind::ConnectionAborted);
    }
}
