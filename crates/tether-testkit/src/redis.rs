//! A `redis-server` of one test or bench, on a free loopback port, without persistence;
//! and a few commands sent to it in RESP by hand (no Redis client needed).
//!
//! scripts/test.sh installs Debian's `redis-server`; without it a test that needs it
//! fails (it does not skip).

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long starting Redis or one command may take.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A running `redis-server`, killed by [`stop`](Self::stop) or when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Child,
}

impl RedisServer {
    /// On a free port of 127.0.0.1.
    pub async fn start() -> RedisServer {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("its address").port()
        };
        RedisServer::start_on(port).await
    }

    /// On `port` (to restart it where the instances look for it): empty.
    pub async fn start_on(port: u16) -> RedisServer {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): Redis is needed here \
                     (Debian: apt-get install redis-server; scripts/test.sh installs it)"
                )
            });
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        within("redis-server to be ready", async {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) if line.contains("Ready to accept connections") => break,
                    Ok(Some(_)) => {}
                    other => panic!("redis-server ended before it was ready: {other:?}"),
                }
            }
        })
        .await;
        // Keep reading its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        RedisServer { port, child }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL) and waits until it is gone.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// The raw RESP answer of one command.
    pub async fn command(&self, args: &[&str]) -> String {
        command(self.port, args).await
    }

    /// How many sessions are stored (`tether:session:*` keys).
    pub async fn sessions(&self) -> u64 {
        let answer = self
            .command(&[
                "EVAL",
                "return #redis.call('KEYS', 'tether:session:*')",
                "0",
            ])
            .await;
        integer(&answer)
    }

    /// `used_memory` of `INFO memory`, in bytes.
    pub async fn used_memory(&self) -> u64 {
        self.info("memory", "used_memory").await
    }

    /// The number `field` of `INFO <section>` (`INFO stats`'s
    /// `total_net_output_bytes`, say).
    pub async fn info(&self, section: &str, field: &str) -> u64 {
        let answer = self.command(&["INFO", section]).await;
        answer
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {answer:?}"))
    }
}

/// Sends one command to the Redis on `port` and returns its whole answer as text (one
/// connection per command; `QUIT` after, so the answer ends with the connection).
pub async fn command(port: u16, args: &[&str]) -> String {
    within("a redis command", async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("redis answers");
        let mut request = Vec::new();
        for cmd in [args, &["QUIT"][..]] {
            request.extend_from_slice(format!("*{}\r\n", cmd.len()).as_bytes());
            for a in cmd {
                request.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
        }
        stream.write_all(&request).await.expect("written");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        let text = String::from_utf8_lossy(&answer).into_owned();
        // Drop the QUIT's "+OK".
        text.strip_suffix("+OK\r\n").unwrap_or(&text).to_owned()
    })
    .await
}

/// The value of an integer answer (`:<n>`).
pub fn integer(answer: &str) -> u64 {
    answer
        .strip_prefix(':')
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("not an integer answer: {answer:?}"))
}
