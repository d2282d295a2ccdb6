//! One proxied connection: two pipes (client → server, server → client), each a
//! queue of timestamped chunks, driven by non-blocking reads and writes.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::proxy::{LiveGuard, State};
use crate::Mode;

const READ_CHUNK: usize = 16 * 1024;
/// Reading from a side pauses while this much is queued for the other side, so
/// a stall ends up pushing back on the sender like a full TCP window.
const QUEUE_LIMIT_BYTES: usize = 1024 * 1024;

/// Makes the close of `stream` abortive: dropping it then sends RST.
pub(crate) fn reset(stream: &TcpStream) {
    // Unlike a non-zero linger, a zero linger never blocks on close.
    if let Err(error) = stream.set_zero_linger() {
        warn!(%error, "cannot set SO_LINGER 0; the close will not reset");
    }
}

pub(crate) async fn run(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut state: watch::Receiver<State>,
    _live: LiveGuard,
) {
    let resets = state.borrow_and_update().resets;
    let mut server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(error) => {
            warn!(%upstream, %error, "upstream connect failed; resetting the client");
            return reset(&client);
        }
    };
    // Forward small frames at once: Nagle's algorithm would add up to a delayed-ACK
    // timeout (40 ms) to every ping, and the proxy would measure itself.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut to_server = Pipe::default();
    let mut to_client = Pipe::default();
    let mut buf = vec![0; READ_CHUNK];
    loop {
        let State {
            mode,
            resets: now_resets,
        } = *state.borrow_and_update();
        if matches!(mode, Mode::Reset | Mode::Refuse) || now_resets != resets {
            debug!(?mode, "resetting connection");
            reset(&client);
            return reset(&server);
        }
        let now = Instant::now();
        let pumped = match to_server
            .pump(&client, &mut server, mode, now, &mut buf)
            .await
        {
            Ok(()) => {
                to_client
                    .pump(&server, &mut client, mode, now, &mut buf)
                    .await
            }
            failed => failed,
        };
        if let Err(error) = pumped {
            debug!(%error, "connection failed; resetting both sides");
            reset(&client);
            return reset(&server);
        }
        if to_server.write_closed && to_client.write_closed {
            return; // both sides closed cleanly
        }
        let wake = [to_server.due_at(mode), to_client.due_at(mode)]
            .into_iter()
            .flatten()
            .filter(|&due| due > now)
            .min();
        tokio::select! {
            changed = state.changed() => if changed.is_err() { return },
            _ = ready(&client, to_server.wants_read(), to_client.blocked) => {}
            _ = ready(&server, to_client.wants_read(), to_server.blocked) => {}
            () = tokio::time::sleep_until(wake.unwrap_or(now)), if wake.is_some() => {}
        }
    }
}

/// Waits until `stream` can do what is wanted of it; never, if nothing is.
async fn ready(stream: &TcpStream, read: bool, write: bool) {
    let interest = match (read, write) {
        (true, true) => Interest::READABLE | Interest::WRITABLE,
        (true, false) => Interest::READABLE,
        (false, true) => Interest::WRITABLE,
        (false, false) => return std::future::pending().await,
    };
    // An error here surfaces again from the next read or write.
    let _ = stream.ready(interest).await;
}

/// Bytes read from one side, waiting to be written to the other.
#[derive(Default)]
struct Pipe {
    queue: VecDeque<Chunk>,
    queued_bytes: usize,
    /// Bytes of the front chunk already written.
    written: usize,
    /// The source sent FIN (queued as an empty chunk).
    read_closed: bool,
    /// FIN has been passed on to the destination.
    write_closed: bool,
    /// A due chunk waits for the destination to accept more.
    blocked: bool,
}

struct Chunk {
    read_at: Instant,
    /// Empty for FIN.
    bytes: Vec<u8>,
}

impl Pipe {
    fn wants_read(&self) -> bool {
        !self.read_closed && self.queued_bytes < QUEUE_LIMIT_BYTES
    }

    /// When the front chunk may be written, or `None` if there is none or the
    /// mode holds it.
    fn due_at(&self, mode: Mode) -> Option<Instant> {
        let delay = match mode {
            Mode::Pass => Duration::ZERO,
            Mode::Delay(delay) => delay,
            _ => return None,
        };
        self.queue.front().map(|chunk| chunk.read_at + delay)
    }

    /// Reads what `src` has, then writes what is due to `dst`, without waiting.
    async fn pump(
        &mut self,
        src: &TcpStream,
        dst: &mut TcpStream,
        mode: Mode,
        now: Instant,
        buf: &mut [u8],
    ) -> io::Result<()> {
        while self.wants_read() {
            match src.try_read(buf) {
                Ok(n) => {
                    self.read_closed = n == 0;
                    self.queued_bytes += n;
                    self.queue.push_back(Chunk {
                        read_at: now,
                        bytes: buf[..n].to_vec(),
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        self.blocked = false;
        while self.due_at(mode).is_some_and(|due| due <= now) {
            let Some(chunk) = self.queue.front() else {
                break;
            };
            if chunk.bytes.is_empty() {
                dst.shutdown().await?; // completes at once for TCP
                self.write_closed = true;
                self.queue.clear();
                break;
            }
            match dst.try_write(&chunk.bytes[self.written..]) {
                Ok(n) => self.written += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    break;
                }
                Err(error) => return Err(error),
            }
            if self.written == chunk.bytes.len() {
                self.queued_bytes -= chunk.bytes.len();
                self.written = 0;
                self.queue.pop_front();
            }
        }
        Ok(())
    }
}
