//! The reliability self-test against real servers on 127.0.0.1: the reference server in
//! protocol mode, a plain echo server, and an address where nothing listens.

mod support;

use std::sync::Arc;
use std::time::Duration;

use tether_core::selftest::{Check, Criteria, Measurement, Outcome};
use tether_core::AuthConfig;
use tether_native::{self_test, Client};
use tether_server::Hub;

use support::reference::{self, Tokens};
use support::{config, within, EchoServer};

/// The default criteria, with a shorter stability window to keep the run short.
fn criteria() -> Criteria {
    Criteria {
        stable_for: Duration::from_millis(500),
        ..Criteria::default()
    }
}

fn outcomes(report: &tether_core::selftest::Report) -> Vec<(Check, Outcome)> {
    report.checks.iter().map(|c| (c.check, c.outcome)).collect()
}

#[tokio::test]
async fn every_check_passes_against_the_reference_server_in_protocol_mode() {
    let hub = Arc::new(Hub::new());
    let server = reference::start(&reference::server_config(), &hub).await;
    let tokens = Tokens::new("self-tester", Duration::from_secs(3600));
    let builder = Client::builder(
        config(server.addr())
            .protocol()
            .auth(AuthConfig::default())
            .build()
            .unwrap(),
    )
    .token_provider(tokens.provider());
    let report = within("the self-test", self_test(builder, &criteria()))
        .await
        .unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(
        outcomes(&report),
        Check::ALL.map(|c| (c, Outcome::Passed)).to_vec()
    );
    let burst = &report.checks[2];
    assert!(
        matches!(
            burst.measured,
            Measurement::Echoes {
                sent: 200,
                in_order: 200,
                misordered: 0,
                ..
            }
        ),
        "{burst}"
    );
}

#[tokio::test]
async fn every_check_passes_against_a_plain_echo_server() {
    let echo = EchoServer::start().await;
    let builder = Client::builder(config(echo.addr).build().unwrap());
    let report = within("the self-test", self_test(builder, &criteria()))
        .await
        .unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.checks.len(), Check::ALL.len());
}

#[tokio::test]
async fn no_server_fails_connectivity_and_skips_the_rest() {
    // Bound but never listening: every attempt is refused.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let criteria = Criteria {
        connect_within: Duration::from_millis(300),
        ..criteria()
    };
    let report = within(
        "the self-test",
        self_test(Client::builder(config(addr).build().unwrap()), &criteria),
    )
    .await
    .unwrap();
    assert!(!report.passed());
    let mut want = vec![(Check::Connectivity, Outcome::Failed)];
    want.extend(Check::ALL[1..].iter().map(|&c| (c, Outcome::Skipped)));
    assert_eq!(outcomes(&report), want);
    assert_eq!(
        report.checks[0].to_string(),
        "connectivity: failed (no connection in time; needs a connection within 300 ms)"
    );
}

#[tokio::test]
async fn criteria_at_their_extremes_neither_panic_nor_hang() {
    let echo = EchoServer::start().await;
    // Bounds too large for any clock: "no bound" in effect, never an overflow (this
    // panicked: `Instant + Duration::MAX`).
    let endless = Criteria {
        connect_within: Duration::MAX,
        round_trips: 0,
        latency_below: Duration::MAX,
        burst: 0,
        burst_within: Duration::MAX,
        stable_for: Duration::from_millis(100),
        reconnect_within: Duration::MAX,
    };
    let builder = Client::builder(config(echo.addr).build().unwrap());
    let report = within("the self-test", self_test(builder, &endless))
        .await
        .unwrap();
    assert_eq!(report.checks.len(), Check::ALL.len(), "{report}");
    assert!(report.passed(), "{report}");
}
