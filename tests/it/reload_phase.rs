//! A SIGHUP reload that changes only probe timings keeps every service on its slot grid: no
//! service is checked twice within one interval (less a tolerance for a busy machine), so no
//! duplicate checks and no burst.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::daemon::{Daemon, fast_config};
use crate::helpers::{TestDb, eventually};
use crate::prober::register;

const INTERVAL: Duration = Duration::from_secs(2);
const TOLERANCE: Duration = Duration::from_millis(500);

/// A healthy loopback service that notes when each request arrived.
struct Recorder {
    port: u16,
    times: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn recorder() -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let times = Arc::new(Mutex::new(Vec::new()));
    let noted = times.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let noted = noted.clone();
            tokio::spawn(async move {
                let (mut buf, mut request) = ([0u8; 1024], Vec::new());
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                noted.lock().unwrap().push(Instant::now());
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = stream.write_all(ok).await;
            });
        }
    });
    Recorder { port, times, task }
}

fn checks_since(r: &Recorder, since: Instant) -> usize {
    r.times
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t >= since)
        .count()
}

/// Waits until every service has been checked `n` times since `since`.
async fn all_checked(services: &[Recorder], since: Instant, n: usize) {
    eventually(
        "every service checked",
        Duration::from_secs(30),
        async || {
            let counts: Vec<usize> = services.iter().map(|r| checks_since(r, since)).collect();
            counts.iter().all(|c| *c >= n).then_some(()).ok_or(counts)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_reload_checks_no_service_twice_within_an_interval() {
    let db = TestDb::migrated().await;
    let mut services = Vec::new();
    for i in 0..12 {
        let r = recorder().await;
        register(&db, &format!("svc-{i}"), r.port.into()).await;
        services.push(r);
    }
    let probe = |timeout: &str| format!("interval = \"2s\"\ntimeout = \"{timeout}\"");
    let daemon = Daemon::start(&db.url, &fast_config(&probe("1s"), ""));
    let started = Instant::now();
    all_checked(&services, started, 2).await;

    daemon.write_config(&fast_config(&probe("900ms"), ""));
    let reloaded = Instant::now();
    daemon.signal("HUP");
    daemon.wait_for(|e| e["event"] == "config_reloaded", Duration::from_secs(10));
    all_checked(&services, reloaded, 2).await;
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));

    for (i, r) in services.iter().enumerate() {
        let times = r.times.lock().unwrap().clone();
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap + TOLERANCE >= INTERVAL,
                "svc-{i} checked twice {gap:?} apart, {:?} after the reload ({:?} since start)",
                pair[1].saturating_duration_since(reloaded),
                pair[1] - started,
            );
        }
    }
}
