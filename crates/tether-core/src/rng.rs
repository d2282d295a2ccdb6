//! A tiny seeded RNG (SplitMix64): every jitter comes from here, so a seed replays a run,
//! and the [`Entropy`] a driver hands the core to seed it.

/// Deterministic pseudo-random numbers from a 64-bit seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator that yields the same sequence for the same seed.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)`; `0` when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
        }
    }
}

/// The randomness one [`Connection`](crate::Connection) starts from: drawn by the driver
/// from the platform (the operating system, `crypto.getRandomValues`), so that every client
/// has its own id and its own jitter schedule. The core has no constant fallback: a
/// connection cannot be built without one.
///
/// The client id is not a jitter draw: it comes from its own 64 bits, so knowing a
/// client's id tells nothing of its delays (and the reverse).
///
/// ```
/// use tether_core::rng::Entropy;
/// let a = Entropy::from_bytes([7; 16]);
/// let b = Entropy::from_bytes([8; 16]);
/// assert_ne!(a.client_id(), b.client_id());
/// // Tests replay a run with a fixed seed.
/// assert_eq!(Entropy::fixed(42), Entropy::fixed(42));
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Entropy {
    jitter_seed: u64,
    client_id: u64,
}

impl Entropy {
    /// 16 random bytes from the platform: the first 8 seed the jitter, the last 8 are the
    /// client id.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let mut jitter = [0; 8];
        let mut id = [0; 8];
        jitter.copy_from_slice(&bytes[..8]);
        id.copy_from_slice(&bytes[8..]);
        Entropy {
            jitter_seed: u64::from_le_bytes(jitter),
            // Never 0: the protocol reads 0 as "no client".
            client_id: u64::from_le_bytes(id) | 1,
        }
    }

    /// A replayable choice for tests and simulations: the same seed gives the same client
    /// id and the same delays. Jitter and id come from two separate streams of the seed.
    #[must_use]
    pub fn fixed(seed: u64) -> Self {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        // "client id" in ASCII separates the id's stream from the jitter's.
        let id = Rng::new(seed ^ 0x636c_6965_6e74_6964).next_u64();
        bytes[8..].copy_from_slice(&id.to_le_bytes());
        Entropy::from_bytes(bytes)
    }

    /// The seed of the jitter RNG.
    #[must_use]
    pub fn jitter_seed(&self) -> u64 {
        self.jitter_seed
    }

    /// The client id the connection presents to a Tether server (never 0).
    #[must_use]
    pub fn client_id(&self) -> u64 {
        self.client_id
    }
}

impl core::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The jitter seed predicts the client's delays: not for logs.
        f.debug_struct("Entropy")
            .field("client_id", &format_args!("{:x}", self.client_id))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn entropy_keeps_id_and_jitter_apart() {
        let e = Entropy::fixed(7);
        assert_ne!(e.client_id(), Rng::new(e.jitter_seed()).next_u64() | 1);
        assert_ne!(Entropy::fixed(1).client_id(), Entropy::fixed(2).client_id());
        assert_eq!(Entropy::from_bytes([0; 16]).client_id(), 1);
        let seeded = Entropy::fixed(0x1234_5678_9abc_def0);
        let shown = format!("{seeded:?}");
        assert!(shown.contains(&format!("{:x}", seeded.client_id())));
        assert!(!shown.contains(&seeded.jitter_seed().to_string()));
        assert!(!shown.contains(&format!("{:x}", seeded.jitter_seed())));
    }

    #[test]
    fn ranges() {
        let mut r = Rng::new(3);
        for _ in 0..10_000 {
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
            assert!(r.below(10) < 10);
        }
        assert_eq!(r.below(0), 0);
    }
}
