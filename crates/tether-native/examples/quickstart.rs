//! Connects to a WebSocket URL, sends a line of text once connected, and prints every
//! event until Ctrl-C (which closes cleanly).
//!
//! ```text
//! cargo run -p tether-native --example quickstart -- ws://127.0.0.1:8080/ws
//! cargo run -p tether-native --example quickstart -- ws://127.0.0.1:8080/ws --protocol
//! RUST_LOG=tether_native=debug cargo run -p tether-native --example quickstart -- wss://example.com/ws
//! ```
//! `--protocol` speaks the Tether protocol (acknowledgements, resend); without it any
//! WebSocket server will do. `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` are
//! followed, as curl follows them.

use tether_native::transport::{NativeTransport, Proxy};
use tether_native::{Client, Config, Event, State};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: quickstart <ws:// or wss:// URL> [--protocol]");
        std::process::exit(2);
    };
    let mut config = Config::builder(url);
    if args.any(|a| a == "--protocol") {
        config = config.protocol();
    }
    let config = config.build()?;
    let mut transport = NativeTransport::for_config(&config);
    if let Some(proxy) = Proxy::from_env()? {
        transport = transport.proxy(proxy);
    }
    let client = Client::builder(config).transport(transport).spawn()?;
    let mut events = client.events();
    let mut greeted = false;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                println!("{event:?}");
                match event {
                    Event::StateChanged { to: State::Connected, .. } if !greeted => {
                        greeted = true;
                        client.send("hello from tether")?;
                    }
                    Event::Stopped(_) => break,
                    _ => {}
                }
            }
            _ = tokio::signal::ctrl_c() => {
                client.close(1000, "bye").await;
                break;
            }
        }
    }
    let m = client.metrics();
    println!(
        "{} messages out, {} in, {} reconnects, quality {:?}",
        m.messages_out, m.messages_in, m.reconnects, m.quality
    );
    Ok(())
}
