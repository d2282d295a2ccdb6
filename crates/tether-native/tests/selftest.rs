//! The reliability self-test against real servers on 127.0.0.1: the reference server in
//! protocol mode, a plain echo server, and an address where nothing listens.

mod support;

use std::sync::Arc;
use std::time::Duration;

use tether_core::selftest::{Check, Criteria, Measurement, Outcome};
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
    let builder = tokens.protocol_client(server.addr());
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
async fn criteria_out_of_range_are_refused_before_anything_runs() {
    // Nothing listens here and nothing is dialled: the criteria are checked first.
    let builder = Client::builder(config("127.0.0.1:9".parse().unwrap()).build().unwrap());
    let huge = Criteria {
        burst: u32::MAX,
        ..Criteria::default()
    };
    let err = self_test(builder, &huge).await.unwrap_err();
    assert!(
        matches!(
            err,
            tether_native::SelfTestError::Criteria(tether_core::selftest::CriteriaField::Burst)
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "self-test criteria: burst must be a whole number from 1 to 10000"
    );
    let builder = Client::builder(config("127.0.0.1:9".parse().unwrap()).build().unwrap());
    let zero = Criteria {
        stable_for: Duration::ZERO,
        ..Criteria::default()
    };
    assert!(matches!(
        self_test(builder, &zero).await,
        Err(tether_native::SelfTestError::Criteria(
            tether_core::selftest::CriteriaField::StableFor
        ))
    ));
}

/// Short bounds, so that a hostile server's run is over in well under a second or two.
fn tight() -> Criteria {
    Criteria {
        connect_within: Duration::from_millis(300),
        round_trips: 3,
        burst: 20,
        burst_within: Duration::from_millis(300),
        stable_for: Duration::from_millis(100),
        reconnect_within: Duration::from_millis(500),
        ..Criteria::default()
    }
}

/// A WebSocket server on 127.0.0.1 that treats each text message with `reply` (the
/// frames to send back), or, without `upgrade`, accepts TCP and never answers.
async fn hostile(
    upgrade: bool,
    reply: fn(String) -> Vec<String>,
) -> (std::net::SocketAddr, tokio::task::JoinSet<()>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            connections.spawn(async move {
                if !upgrade {
                    // Reads the upgrade request and says nothing, ever.
                    let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
                    return;
                }
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Text(text) = message {
                        for out in reply(text.as_str().to_owned()) {
                            if ws.send(Message::Text(out.into())).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, tasks)
}

/// Runs the self-test against `addr` with [`tight`] criteria; the run must end within
/// their bounds and the client's 2 s close grace (for a server that never reads the
/// close), whatever the server does.
async fn run_against(addr: std::net::SocketAddr) -> tether_core::selftest::Report {
    let started = std::time::Instant::now();
    let report = within(
        "the self-test",
        self_test(Client::builder(config(addr).build().unwrap()), &tight()),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(3_500),
        "took {:?}:\n{report}",
        started.elapsed()
    );
    report
}

#[tokio::test]
async fn a_server_that_never_answers_the_upgrade_fails_connectivity_in_time() {
    let (addr, _server) = hostile(false, |_| vec![]).await;
    let report = run_against(addr).await;
    let mut want = vec![(Check::Connectivity, Outcome::Failed)];
    want.extend(Check::ALL[1..].iter().map(|&c| (c, Outcome::Skipped)));
    assert_eq!(outcomes(&report), want, "{report}");
    assert_eq!(
        report.checks[0].to_string(),
        "connectivity: failed (no connection in time; needs a connection within 300 ms)"
    );
}

#[tokio::test]
async fn a_server_that_never_echoes_fails_latency_in_time() {
    let (addr, _server) = hostile(true, |_| vec![]).await;
    let report = run_against(addr).await;
    let want = [
        (Check::Connectivity, Outcome::Passed),
        (Check::Latency, Outcome::Failed),
        (Check::HighFrequency, Outcome::Skipped),
        (Check::Stability, Outcome::Skipped),
        (Check::Reconnection, Outcome::Skipped),
    ];
    assert_eq!(outcomes(&report), want, "{report}");
    assert_eq!(
        report.checks[1].to_string(),
        "latency: failed (an echo did not come back in time; needs under 200 ms)"
    );
    // The connection is up: a skipped check does not claim there is none (it did).
    assert_eq!(
        report.checks[3].to_string(),
        "stability: skipped (not run: a check before it failed; needs no drop in 100 ms)"
    );
}

#[tokio::test]
async fn a_server_that_echoes_twice_or_floods_fails_high_frequency_with_its_count() {
    // Every message twice, with noise before it: the round trips still find their echo,
    // the burst sees each one repeated.
    let (addr, _server) = hostile(true, |text| {
        vec![
            "tether-selftest:rtt:4294967296".into(),
            "noise".into(),
            text.clone(),
            text,
        ]
    })
    .await;
    let report = run_against(addr).await;
    assert!(report.checks[1].passed(), "{report}");
    let burst = &report.checks[2];
    assert_eq!(burst.outcome, Outcome::Failed, "{report}");
    assert!(
        matches!(
            burst.measured,
            Measurement::Echoes {
                sent: 20,
                in_order: 10,
                misordered: 10,
                ..
            }
        ),
        "{report}"
    );
}

/// A server that floods noise once spoken to: every wait still ends at its bound, even
/// while events keep arriving (a wait that only looked at its deadline when no event
/// was ready could be held past it by a flood).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_floods_noise_fails_latency_in_time() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = tokio::task::JoinSet::new();
    server.spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            connections.spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let _ = ws.next().await;
                // Bounded, like every loop here: far more than a second's worth.
                for _ in 0..2_000_000 {
                    if ws.send(Message::Text("noise".into())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let report = run_against(addr).await;
    assert_eq!(report.checks[1].outcome, Outcome::Failed, "{report}");
    assert_eq!(
        report.checks[1].measured,
        Measurement::Nothing("an echo did not come back in time")
    );
    server.shutdown().await;
}
