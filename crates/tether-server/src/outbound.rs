//! A WebSocket's outbound queue: the frames the hub queues for a socket's writer,
//! bounded in frames and bytes, and the close requests the hub sends its task.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tether_core::Payload;
use tokio::sync::mpsc;

/// A frame for a WebSocket's writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// An application message (counted as sent).
    Msg(Payload),
    /// Anything else: Welcome, Ack, Pong, or a plain echo's `pong`.
    Control(Payload),
    /// A WebSocket ping control frame (latency probe).
    Ping(Vec<u8>),
    /// Send a close frame and stop.
    Close(u16, String),
}

impl Outbound {
    /// Bytes it holds, as counted against [`crate::ServerConfig::max_queued_bytes`].
    pub(crate) fn size(&self) -> usize {
        match self {
            Outbound::Msg(p) | Outbound::Control(p) => p.len(),
            Outbound::Ping(d) => d.len(),
            Outbound::Close(_, reason) => reason.len(),
        }
    }
}

/// A request from the hub to a WebSocket's task to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

/// Frames queued for one WebSocket and not yet written: counted in frames and bytes,
/// shared by the hub (which queues) and the socket's writer (which takes).
#[derive(Debug)]
pub(crate) struct OutQueue {
    frames: AtomicUsize,
    bytes: AtomicUsize,
    /// Past a limit: the socket is closing as too slow; only its close frame is written.
    overflowed: AtomicBool,
    /// Bytes queued for every socket of the hub.
    total: Arc<AtomicUsize>,
    max_frames: usize,
    max_bytes: usize,
}

impl OutQueue {
    pub(crate) fn new(total: Arc<AtomicUsize>, max_frames: usize, max_bytes: usize) -> Self {
        OutQueue {
            frames: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
            total,
            max_frames,
            max_bytes,
        }
    }

    /// The writer took `frame` off the queue.
    pub(crate) fn taken(&self, frame: &Outbound) {
        let size = frame.size();
        self.frames.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(size, Ordering::Relaxed);
        self.total.fetch_sub(size, Ordering::Relaxed);
    }

    /// Whether the socket overflowed: the writer skips everything but the close frame.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }
}

/// Where frames for one WebSocket go; the hub and the socket's task each hold one.
#[derive(Clone, Debug)]
pub(crate) struct SocketLink {
    pub(crate) out: mpsc::UnboundedSender<Outbound>,
    pub(crate) ctl: mpsc::UnboundedSender<CloseRequest>,
    pub(crate) queue: Arc<OutQueue>,
}

impl SocketLink {
    /// Queues a frame. A frame that would take the queue past
    /// [`crate::ServerConfig::max_queued_frames`] or
    /// [`crate::ServerConfig::max_queued_bytes`] is not queued: the client reads too
    /// slowly and the socket is asked to close (1013).
    /// Its messages stay in the session's resume buffer for the client's next Hello.
    pub(crate) fn push(&self, frame: Outbound) {
        if self.reserve(&frame) {
            self.push_reserved(frame);
        }
    }

    /// Counts `frame` in the queue as [`push`](Self::push) does, without sending it yet:
    /// a frame held until the session state behind it is in the shared store is
    /// bounded like one queued. `false`: it does not fit (the socket is asked to close
    /// as too slow, as by `push`); it must not be sent.
    pub(crate) fn reserve(&self, frame: &Outbound) -> bool {
        let q = &self.queue;
        let closing = matches!(frame, Outbound::Close(..));
        if q.overflowed() && !closing {
            return false;
        }
        let size = frame.size();
        let frames = q.frames.load(Ordering::Relaxed);
        let bytes = q.bytes.load(Ordering::Relaxed);
        // One frame bigger than the whole byte limit still goes through an empty queue.
        let fits =
            frames < q.max_frames && (bytes == 0 || bytes.saturating_add(size) <= q.max_bytes);
        if !fits && !closing {
            if !q.overflowed.swap(true, Ordering::Relaxed) {
                let _ = self.ctl.send(CloseRequest {
                    code: 1013,
                    reason: "client too slow",
                });
            }
            return false;
        }
        q.frames.fetch_add(1, Ordering::Relaxed);
        q.bytes.fetch_add(size, Ordering::Relaxed);
        q.total.fetch_add(size, Ordering::Relaxed);
        true
    }

    /// Sends a frame [`reserve`](Self::reserve) counted (given back if the socket is
    /// gone, or overflowed meanwhile and the frame is not its close).
    pub(crate) fn push_reserved(&self, frame: Outbound) {
        if self.queue.overflowed() && !matches!(frame, Outbound::Close(..)) {
            self.queue.taken(&frame);
            return;
        }
        if let Err(unsent) = self.out.send(frame) {
            self.queue.taken(&unsent.0);
        }
    }

    pub(crate) fn close(&self, code: u16, reason: &'static str) {
        let _ = self.ctl.send(CloseRequest { code, reason });
    }
}

/// The writer's end of a socket's queue. When it goes (the socket failed, the server
/// was killed, the writer's task aborted), whatever is still queued is given back to
/// the counts, and frames queued or released after it are refused and given back
/// too: a socket that is gone counts for nothing in [`crate::Hub::memory`].
#[derive(Debug)]
pub(crate) struct QueueReader {
    rx: mpsc::UnboundedReceiver<Outbound>,
    queue: Arc<OutQueue>,
}

impl QueueReader {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Outbound>, queue: Arc<OutQueue>) -> Self {
        QueueReader { rx, queue }
    }

    /// The next frame (still counted: the caller calls [`OutQueue::taken`]).
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        self.rx.recv().await
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl Drop for QueueReader {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(frame) = self.rx.try_recv() {
            self.queue.taken(&frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(
        max_frames: usize,
        max_bytes: usize,
    ) -> (
        SocketLink,
        mpsc::UnboundedReceiver<Outbound>,
        mpsc::UnboundedReceiver<CloseRequest>,
    ) {
        let (out, out_rx) = mpsc::unbounded_channel();
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let total = Arc::new(AtomicUsize::new(0));
        let queue = Arc::new(OutQueue::new(total, max_frames, max_bytes));
        (SocketLink { out, ctl, queue }, out_rx, ctl_rx)
    }

    #[test]
    fn a_socket_queue_past_its_frame_count_closes_1013_and_queues_no_more() {
        let (link, mut out, mut ctl) = link(3, 1 << 20);
        for _ in 0..10 {
            link.push(Outbound::Msg(Payload::from("x")));
        }
        assert_eq!(ctl.try_recv().map(|r| r.code), Ok(1013));
        assert!(ctl.try_recv().is_err(), "asked to close once");
        let mut queued = 0;
        while out.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 3);
        // The close frame itself still goes through.
        link.push(Outbound::Close(1013, "client too slow".into()));
        assert!(matches!(out.try_recv(), Ok(Outbound::Close(1013, _))));
    }

    #[test]
    fn frames_held_for_the_store_count_in_the_queue_and_are_given_back_if_dropped() {
        let (link, mut out, mut ctl) = link(1000, 10);
        let held = Outbound::Msg(Payload::from("0123456789"));
        assert!(link.reserve(&held));
        assert_eq!(link.queue.total.load(Ordering::Relaxed), 10);
        // Held frames count: one more does not fit, whether queued or held.
        assert!(!link.reserve(&Outbound::Msg(Payload::from("x"))));
        assert_eq!(ctl.try_recv().map(|r| r.code), Ok(1013));
        // Overflowed meanwhile: the held frame is not sent, and its bytes come back.
        link.push_reserved(held);
        assert!(out.try_recv().is_err());
        assert_eq!(link.queue.total.load(Ordering::Relaxed), 0);
        assert_eq!(link.queue.frames.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn what_is_queued_when_the_writer_goes_is_given_back() {
        let (link, out, _ctl) = link(1000, 1 << 20);
        link.push(Outbound::Msg(Payload::from("queued")));
        let held = Outbound::Msg(Payload::from("held"));
        assert!(link.reserve(&held));
        assert_eq!(link.queue.total.load(Ordering::Relaxed), 10);
        drop(QueueReader::new(out, Arc::clone(&link.queue)));
        assert_eq!(
            link.queue.total.load(Ordering::Relaxed),
            4,
            "only the held one"
        );
        // Released after the writer went: refused, and given back.
        link.push_reserved(held);
        link.push(Outbound::Msg(Payload::from("late")));
        assert_eq!(link.queue.total.load(Ordering::Relaxed), 0);
        assert_eq!(link.queue.frames.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_socket_queue_is_bounded_in_bytes_and_the_writer_gives_them_back() {
        let (link, mut out, mut ctl) = link(1000, 10);
        link.push(Outbound::Msg(Payload::from("0123456789abc"))); // alone: allowed
        assert!(ctl.try_recv().is_err());
        link.push(Outbound::Msg(Payload::from("x")));
        assert_eq!(ctl.try_recv().map(|r| r.code), Ok(1013));
        assert_eq!(link.queue.total.load(Ordering::Relaxed), 13);
        let first = out.try_recv().unwrap();
        link.queue.taken(&first);
        assert_eq!(link.queue.total.load(Ordering::Relaxed), 0);
        assert!(out.try_recv().is_err());
    }
}
