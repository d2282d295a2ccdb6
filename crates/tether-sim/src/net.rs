//! The simulated network: one link per transport id, with seeded latency, per-direction
//! ordering (a WebSocket is a TCP stream: frames arrive in the order written), and the
//! network's faults (offline, refusing, hanging or blocked connects, latency spikes,
//! half-open links).

use std::collections::BTreeMap;

use tether_core::rng::Rng;
use tether_core::{Duration, RequestId, TransportFailure, TransportId};

use crate::rand::Draw;

/// What kind of transport a link carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// A WebSocket.
    Ws,
    /// An HTTP polling session (each request is its own exchange).
    Poll,
}

/// One transport as the network sees it.
#[derive(Clone, Debug)]
pub struct Link {
    /// WebSocket or polling.
    pub kind: LinkKind,
    /// The client still has it (it has not closed it, nor been told it ended).
    pub client_open: bool,
    /// The upgrade completed (WebSocket).
    pub established: bool,
    /// Half-open: nothing gets through either way, and nobody is told.
    pub stalled: bool,
    /// The token presented when it was opened.
    pub token: Option<String>,
    /// The client id of a polling session.
    pub client_id: Option<u64>,
    /// Polling requests sent and not yet answered.
    pub requests: Vec<RequestId>,
    up_tail: Duration,
    down_tail: Duration,
}

/// Injected network conditions.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    /// No network at all: connects and requests fail.
    pub offline: bool,
    /// Connects (and polls) are refused.
    pub refuse: bool,
    /// Connects get no answer at all.
    pub hang: bool,
    /// WebSocket upgrades fail like this while polls work (a proxy that blocks them).
    pub ws_blocked: Option<TransportFailure>,
    /// Added to every latency (a spike).
    pub extra_latency: Duration,
}

/// Links, latency and conditions.
#[derive(Debug)]
pub struct Net {
    links: BTreeMap<TransportId, Link>,
    /// Fixed part of the one-way latency.
    pub base_latency: Duration,
    /// Uniform random part of the one-way latency.
    pub jitter: Duration,
    /// What is wrong with the network now.
    pub conditions: Conditions,
    rng: Rng,
}

impl Net {
    /// A healthy network with one-way latency `base + uniform(0, jitter)`.
    #[must_use]
    pub fn new(seed: u64, base_latency: Duration, jitter: Duration) -> Self {
        Net {
            links: BTreeMap::new(),
            base_latency,
            jitter,
            conditions: Conditions::default(),
            rng: Rng::new(seed),
        }
    }

    /// One one-way latency draw.
    pub fn latency(&mut self) -> Duration {
        let jitter = self.jitter.as_micros() as u64;
        self.base_latency
            + Duration::from_micros(self.rng.range(0, jitter))
            + self.conditions.extra_latency
    }

    /// A new link.
    pub fn add(
        &mut self,
        id: TransportId,
        kind: LinkKind,
        token: Option<String>,
        client_id: Option<u64>,
    ) {
        self.links.insert(
            id,
            Link {
                kind,
                client_open: true,
                established: false,
                stalled: false,
                token,
                client_id,
                requests: Vec::new(),
                up_tail: Duration::ZERO,
                down_tail: Duration::ZERO,
            },
        );
    }

    /// The link `id`, if it was ever made.
    #[must_use]
    pub fn link(&self, id: TransportId) -> Option<&Link> {
        self.links.get(&id)
    }

    /// The link `id`, mutably.
    pub fn link_mut(&mut self, id: TransportId) -> Option<&mut Link> {
        self.links.get_mut(&id)
    }

    /// The newest link the client still holds.
    #[must_use]
    pub fn current(&self) -> Option<TransportId> {
        self.links
            .iter()
            .rev()
            .find(|(_, l)| l.client_open)
            .map(|(id, _)| *id)
    }

    /// When a frame written now (`at`) on `id` reaches the server: after the frames
    /// written before it.
    pub fn up_arrival(&mut self, id: TransportId, at: Duration) -> Duration {
        let lat = self.latency();
        let link = self.links.get_mut(&id).expect("link");
        link.up_tail = link.up_tail.max(at + lat);
        link.up_tail
    }

    /// When a frame written now (`at`) by the server on `id` reaches the client.
    pub fn down_arrival(&mut self, id: TransportId, at: Duration) -> Duration {
        let lat = self.latency();
        let link = self.links.get_mut(&id).expect("link");
        link.down_tail = link.down_tail.max(at + lat);
        link.down_tail
    }

    /// The seeded RNG of the network.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Forgets links that are over on both sides (keeps the map small).
    pub fn forget(&mut self, id: TransportId) {
        self.links.remove(&id);
    }
}
