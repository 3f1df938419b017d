//! The `/metrics` and `/healthz` endpoint cannot starve the prober. With the daemon's descriptor
//! limit lowered to 160, three times that many idle connections to the endpoint leave at most
//! 64 of them open (the cap: the rest are closed as soon as they are accepted), every service
//! keeps being checked and stays healthy, the held ones are closed by the header-read (idle)
//! timeout, and `/healthz` answers again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::daemon::Daemon;
use crate::fleet::{self, Behaviour, Server};
use crate::helpers::{TestDb, eventually};
use crate::prober::{register, statuses, wait_until_healthy};

/// The daemon's descriptor limit (soft and hard) once it runs.
const FD_LIMIT: u64 = 160;
/// Idle connections opened to the endpoint: far more than the limit allows.
const IDLE: usize = 3 * FD_LIMIT as usize;
/// `observe::http::MAX_CONNECTIONS`.
const CAP: usize = 64;
const SERVICES: usize = 4;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn config(port: u16) -> String {
    format!(
        "[database]\nflush_interval = \"200ms\"\nconnect_timeout = \"1s\"\nmax_connections = 4\n\
         [probe]\ninterval = \"1s\"\ntimeout = \"1s\"\nfailure_threshold = 2\nconcurrency = 8\n\
         [log]\nformat = \"json\"\nlevel = \"info\"\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n\
         [daemon]\nshutdown_grace = \"2s\"\n"
    )
}

/// Lowers a running process's descriptor limit, soft and hard, as `ulimit -n` would have.
fn limit_descriptors(pid: u32, limit: u64) {
    let new = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: prlimit reads `new` and, given a null old-limit pointer, writes nothing.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn descriptors_in_use(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Idle connections to the endpoint: how many connected, and how many the server has not
/// closed yet. Dropping `tasks` closes the rest.
struct Idle {
    connected: usize,
    open: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

/// Opens `n` connections at once that never send a byte; returns when each has connected or
/// given up (a connection the server never accepts times out rather than hanging the test).
async fn idle_connections(port: u16, n: usize) -> Idle {
    let open = Arc::new(AtomicUsize::new(0));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(n);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (open, done) = (open.clone(), done_tx.clone());
        tasks.push(tokio::spawn(async move {
            let connect = TcpStream::connect(("127.0.0.1", port));
            let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(10), connect).await
            else {
                let _ = done.send(false).await;
                return;
            };
            open.fetch_add(1, Ordering::SeqCst);
            let _ = done.send(true).await;
            let mut buf = [0u8; 64];
            // Until EOF or a reset: the server closed it.
            while matches!(stream.read(&mut buf).await, Ok(read) if read > 0) {}
            open.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    let mut connected = 0;
    for _ in 0..n {
        connected += usize::from(done_rx.recv().await.unwrap());
    }
    Idle {
        connected,
        open,
        tasks,
    }
}

/// `GET /healthz` on a new connection: `Ok` with the reply if it is a 200.
async fn healthz(port: u16) -> Result<String, String> {
    let ask = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: healthd\r\nConnection: close\r\n\r\n")
            .await?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    match tokio::time::timeout(Duration::from_secs(3), ask).await {
        Ok(Ok(reply)) if reply.starts_with("HTTP/1.1 200") => Ok(reply),
        Ok(Ok(reply)) => Err(format!("reply: {reply:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no reply within 3s".into()),
    }
}

async fn open_count(open: &AtomicUsize, at_most: usize) -> Result<usize, usize> {
    let n = open.load(Ordering::SeqCst);
    if n <= at_most { Ok(n) } else { Err(n) }
}

#[tokio::test]
async fn idle_connections_to_the_endpoint_never_starve_the_prober() {
    let db = TestDb::migrated().await;
    let mut servers: Vec<Server> = Vec::new();
    for i in 0..SERVICES {
        servers.push(fleet::spawn(Behaviour::Healthy).await);
        register(&db, &format!("fd-{i}"), servers[i].port.into()).await;
    }
    let port = free_port();
    let daemon = Daemon::start(&db.url, &config(port));
    for i in 0..SERVICES {
        wait_until_healthy(&db, &format!("fd-{i}"), "healthy", Duration::from_secs(30)).await;
    }
    eventually("/healthz answers", Duration::from_secs(30), async || {
        healthz(port).await
    })
    .await;
    let in_use = descriptors_in_use(daemon.pid());
    limit_descriptors(daemon.pid(), FD_LIMIT);

    let idle = idle_connections(port, IDLE).await;
    assert!(
        idle.connected > FD_LIMIT as usize,
        "{} connected",
        idle.connected
    );
    let open = &idle.open;
    let held = eventually(
        "all but the capped connections closed at once",
        Duration::from_secs(20),
        async || open_count(open, CAP).await,
    )
    .await;
    // While those are held, every service is checked again, several times, and succeeds.
    let before: Vec<usize> = servers.iter().map(Server::hits).collect();
    eventually(
        "every service checked 3 more times",
        Duration::from_secs(30),
        async || {
            let after: Vec<usize> = servers.iter().map(Server::hits).collect();
            let checked = before.iter().zip(&after).all(|(b, a)| a >= &(b + 3));
            if checked { Ok(()) } else { Err(after) }
        },
    )
    .await;
    let still_held = open.load(Ordering::SeqCst);
    // The held ones send nothing: the header-read timeout closes them, then /healthz answers.
    eventually(
        "idle connections closed by the server",
        Duration::from_secs(30),
        async || open_count(open, 0).await,
    )
    .await;
    eventually(
        "/healthz answers again",
        Duration::from_secs(30),
        async || healthz(port).await,
    )
    .await;
    eprintln!(
        "descriptors: {in_use} in use before, limit {FD_LIMIT}; {IDLE} idle connections, \
         {} connected, {held} held after the cap, {still_held} still held after 3 more checks \
         per service",
        idle.connected
    );
    drop(idle.tasks);

    let log = daemon.raw_log();
    let (_, events) = daemon.stop();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(
        !events.iter().any(|e| e["event"] == "service_down"),
        "a service went down: {log}"
    );
    let rows = statuses(&db).await;
    for i in 0..SERVICES {
        let row = &rows[&format!("fd-{i}")];
        assert_eq!(row.is_healthy, Some(true), "{row:?}");
    }
}
