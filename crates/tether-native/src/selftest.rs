//! The reliability self-test on tokio: measures what
//! [`tether_core::selftest`] judges, with a client of its own.

use std::time::Instant;

use std::fmt;

use tether_core::selftest::{Check, Criteria, CriteriaField, Measurement, Report};
use tether_core::{Event, Payload, State};
use tether_dispatch::transport::Transport;
use tokio::time::timeout_at;

use crate::{BuildError, Client, ClientBuilder, Events};

/// Marks the self-test's messages among whatever else the server sends.
const PREFIX: &str = "tether-selftest:";

/// Why the self-test did not run.
#[derive(Debug)]
#[non_exhaustive]
pub enum SelfTestError {
    /// The client could not be made (its configuration or transport).
    Build(BuildError),
    /// A criterion is out of range ([`Criteria::validate`]).
    Criteria(CriteriaField),
}

impl fmt::Display for SelfTestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelfTestError::Build(e) => write!(f, "the self-test's client: {e}"),
            SelfTestError::Criteria(field) => write!(f, "self-test criteria: {field}"),
        }
    }
}

impl std::error::Error for SelfTestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SelfTestError::Build(e) => Some(e),
            SelfTestError::Criteria(field) => Some(field),
        }
    }
}

impl From<BuildError> for SelfTestError {
    fn from(e: BuildError) -> Self {
        SelfTestError::Build(e)
    }
}

/// Runs the reliability self-test with a client made from `builder` (its URL, mode,
/// token provider and transport) against a server that echoes every message, and
/// closes that client. Criteria out of range are refused before anything runs
/// ([`SelfTestError::Criteria`]). The checks and their criteria are
/// [`tether_core::selftest`]'s; each runs once the one before passed, and the rest
/// are skipped after a failure. The whole run takes about `criteria.stable_for` plus a
/// few round trips on a healthy connection, and at most the sum of the criteria's
/// bounds, whatever the server does (one that never answers or never echoes fails a
/// check at its bound), plus the 2 s the client gives a server that does not answer
/// its close.
///
/// ```no_run
/// use tether_native::core::selftest::Criteria;
/// use tether_native::{Client, Config};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::builder("ws://127.0.0.1:8080/echo").build()?;
/// let report = tether_native::self_test(Client::builder(config), &Criteria::default()).await?;
/// print!("{report}"); // one line per check: passed or failed, measured, criterion
/// assert!(report.passed());
/// # Ok(())
/// # }
/// ```
pub async fn self_test<T>(
    builder: ClientBuilder<T>,
    criteria: &Criteria,
) -> Result<Report, SelfTestError>
where
    T: Transport + Send + Sync + 'static,
    T::Writer: Send + 'static,
    T::Reader: Send + 'static,
{
    criteria.validate().map_err(SelfTestError::Criteria)?;
    let started = Instant::now();
    let client = builder.spawn()?;
    let mut events = client.events();
    let mut report = Report::default();
    let mut judge = |check, measured| {
        let verdict = criteria.judge(check, measured);
        let passed = verdict.passed();
        report.checks.push(verdict);
        passed
    };

    let connected = connected_within(&client, started, criteria.connect_within).await;
    let mut ok = judge(Check::Connectivity, connected);
    if ok {
        ok = judge(
            Check::Latency,
            latency(&client, &mut events, criteria).await,
        );
    }
    if ok {
        ok = judge(
            Check::HighFrequency,
            burst(&client, &mut events, criteria).await,
        );
    }
    if ok {
        ok = judge(Check::Stability, stability(&client, criteria).await);
    }
    if ok {
        judge(Check::Reconnection, reconnection(&client, criteria).await);
    }
    for check in Check::ALL.into_iter().skip(report.checks.len()) {
        report.checks.push(criteria.skipped(check));
    }
    client.close_now(1000, "self-test done").await;
    Ok(report)
}

/// Time from `since` to connected, if within `limit`.
async fn connected_within(
    client: &Client,
    since: Instant,
    limit: tether_core::Duration,
) -> Measurement {
    let mut state = client.state_watch();
    let outcome = timeout_at(
        deadline(since, limit),
        state.wait_for(|s| matches!(s, State::Connected | State::Error)),
    )
    .await
    .map(|r| r.is_ok_and(|s| *s == State::Connected));
    match outcome {
        Ok(true) => Measurement::Time(since.elapsed()),
        Ok(false) => Measurement::Nothing("the client stopped"),
        Err(_) => Measurement::Nothing("no connection in time"),
    }
}

/// `limit` after `since`; a bound past what the clock can hold (`Duration::MAX`) is
/// no bound, never an overflow.
fn deadline(since: Instant, limit: tether_core::Duration) -> tokio::time::Instant {
    // As far as tokio's own timers reach for "never".
    const FAR: tether_core::Duration = tether_core::Duration::from_secs(86_400 * 365 * 30);
    let since = tokio::time::Instant::from_std(since);
    since.checked_add(limit).unwrap_or(since + FAR)
}

/// The next self-test echo, as its number, before `deadline`.
async fn next_echo(events: &mut Events, tag: &str, deadline: tokio::time::Instant) -> Option<u32> {
    loop {
        // `timeout_at` looks at its deadline only when no event is ready: a server that
        // floods the client with other messages would hold this loop past it.
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        match timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Message(Payload::Text(text)))) => {
                if let Some(n) = text
                    .strip_prefix(PREFIX)
                    .and_then(|rest| rest.strip_prefix(tag))
                    .and_then(|n| n.parse().ok())
                {
                    return Some(n);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

async fn latency(client: &Client, events: &mut Events, criteria: &Criteria) -> Measurement {
    let mut round_trips = Vec::new();
    // Each round trip may take up to the bound of the whole burst check: a slower one
    // fails latency anyway.
    for n in 0..criteria.round_trips.max(1) {
        let sent = Instant::now();
        let deadline = deadline(sent, criteria.burst_within);
        if client.send(format!("{PREFIX}rtt:{n}")).is_err() {
            return Measurement::Nothing("a message was refused");
        }
        loop {
            match next_echo(events, "rtt:", deadline).await {
                Some(echo) if echo == n => break,
                Some(_) => {}
                None => return Measurement::Nothing("an echo did not come back in time"),
            }
        }
        round_trips.push(sent.elapsed());
    }
    Criteria::median(&mut round_trips)
        .map_or(Measurement::Nothing("no round trip"), Measurement::Time)
}

async fn burst(client: &Client, events: &mut Events, criteria: &Criteria) -> Measurement {
    let started = Instant::now();
    let deadline = deadline(started, criteria.burst_within);
    let mut sent = 0;
    for n in 0..criteria.burst {
        // Waits for room rather than failing on a small queue: the check is about
        // delivery, not the queue's size.
        let send = client.send_wait(format!("{PREFIX}burst:{n}"));
        match timeout_at(deadline, send).await {
            Ok(Ok(_)) => sent += 1,
            _ => break,
        }
    }
    let mut echoed = Vec::with_capacity(sent as usize);
    while echoed.len() < sent as usize {
        match next_echo(events, "burst:", deadline).await {
            Some(n) => echoed.push(n),
            None => break,
        }
    }
    let (in_order, misordered) = Criteria::tally_echoes(&echoed);
    Measurement::Echoes {
        sent,
        in_order,
        misordered,
        took: started.elapsed(),
    }
}

/// Drops over the window, from the client's own count of connections re-established
/// (a watch on the state could miss a drop and recovery between two looks).
async fn stability(client: &Client, criteria: &Criteria) -> Measurement {
    let before = client.metrics().reconnects;
    tokio::time::sleep(criteria.stable_for).await;
    let after = client.metrics();
    let down_now = u32::from(after.state != State::Connected);
    Measurement::Drops(after.reconnects.saturating_sub(before) + down_now)
}

async fn reconnection(client: &Client, criteria: &Criteria) -> Measurement {
    client.close_now(1000, "self-test: reconnection").await;
    let since = Instant::now();
    client.reconnect();
    connected_within(client, since, criteria.reconnect_within).await
}
