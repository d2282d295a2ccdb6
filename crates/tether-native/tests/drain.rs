//! A rolling restart behind a load balancer: the instance a client is on drains
//! (close 1012 after a retry hint), the client waits the hint and reconnects through
//! the balancer to the next instance, and resumes its session there: every message
//! exactly once, both ways, no reset.
//!
//! The two instances share one in-memory [`Hub`] (two listeners of one process): the
//! session store that the Redis store gives instances in separate processes.

mod support;

use std::sync::Arc;
use std::time::Duration;

use tether_core::{Event, State};
use tether_server::Hub;
use tether_testkit::Balancer;

use support::reference::{self, tap_until, Recorder, Tally, Tokens};
use support::within;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_instance_sends_its_client_to_the_next_one_and_nothing_is_lost() {
    let hub = Arc::new(Hub::new());
    let config = reference::server_config();
    let first = reference::start(&config, &hub).await;
    let second = reference::start(&config, &hub).await;
    // Only the first instance behind the balancer at first, so the client lands there.
    let balancer = Balancer::start([first.addr()]).await.unwrap();
    let tokens = Tokens::new("rolling", HOUR);
    let client = tokens.protocol_client(balancer.addr()).spawn().unwrap();
    let mut events = Recorder::new(client.events());
    events.until_connected().await;
    balancer.add(second.addr()).unwrap();

    let mut tap = hub.tap();
    let mut at_server = Tally::default();
    let mut ids = Vec::new();
    for n in 1..=10 {
        ids.push(client.send(format!("m{n}")).unwrap());
    }
    tap_until(&mut tap, &mut at_server, "m10").await;
    events.until_message("m10").await;

    // The first instance drains; the client is told to come back within the window.
    let window = Duration::from_millis(1500);
    let (all_gone, scheduled) = tokio::join!(first.drain(window), async {
        events
            .until("the reconnect after the drain", |e| {
                matches!(e, Event::ReconnectScheduled { .. })
            })
            .await
    });
    assert!(all_gone, "the client left the draining instance");
    let Event::ReconnectScheduled { delay, hinted, .. } = scheduled else {
        unreachable!()
    };
    assert!(hinted, "the server's hint chose the delay");
    assert!(delay < window, "{delay:?}");
    let disconnect = events
        .logged(|e| matches!(e, Event::Disconnected { .. }))
        .pop()
        .cloned();
    let Some(Event::Disconnected { cause, .. }) = disconnect else {
        panic!("no Disconnected event: {:?}", events.log)
    };
    assert_eq!(cause.code, Some(1012), "{cause:?}");
    first.shutdown().await;

    // Sent while away: queued, then delivered by the second instance.
    for n in 11..=20 {
        ids.push(client.send(format!("m{n}")).unwrap());
    }
    events.until_connected().await;
    assert_eq!(client.state(), State::Connected);
    tap_until(&mut tap, &mut at_server, "m20").await;
    events.until_message("m20").await;
    let last = *ids.last().unwrap();
    events
        .until("the last message confirmed", |e| {
            *e == Event::Delivered { id: last }
        })
        .await;

    let expected: Vec<String> = (1..=20).map(|n| format!("m{n}")).collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    at_server.assert_exactly_once("at the server", expected.iter().copied());
    events
        .messages
        .assert_exactly_once("echoes at the client", expected.iter().copied());
    events.assert_delivered_once(&ids);
    assert!(
        events
            .logged(|e| matches!(e, Event::SessionReset { .. }))
            .is_empty(),
        "the session was resumed, not reset"
    );
    assert_eq!(events.missed(), 0);
    let upstreams = balancer.upstreams();
    assert_eq!(upstreams[0].connections, 1, "{upstreams:?}");
    assert!(upstreams[1].connections >= 1, "{upstreams:?}");

    within("close", client.close(1000, "done")).await;
    second.shutdown().await;
    balancer.stop().await;
}
