//! Running under systemd: the notification protocol, reload on SIGHUP, a graceful stop with a
//! hung check in flight, the unit file, and no password in any output.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcp_healthd::config::DatabaseUrl;

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour, Server};
use crate::helpers::{TestDb, healthd, text};
use crate::prober::register;
use crate::proxy::Proxy;

/// A datagram socket standing in for systemd's NOTIFY_SOCKET; records every message.
struct NotifySocket {
    path: std::path::PathBuf,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push((Instant::now(), text));
            }
        });
        Self {
            path,
            messages,
            _dir: dir,
        }
    }

    fn lines(&self) -> Vec<(Instant, String)> {
        let mut out = Vec::new();
        for (at, message) in self.messages.lock().unwrap().iter() {
            for line in message.lines() {
                out.push((*at, line.to_owned()));
            }
        }
        out
    }

    fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|(_, l)| l == line).count()
    }

    fn wait_for(&self, line: &str, after: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.count(line) <= after {
            assert!(
                Instant::now() < deadline,
                "{line} not received within {limit:?}: {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn wait_hit(server: &Server, limit: Duration) {
    let start = Instant::now();
    let before = server.hits();
    while server.hits() == before {
        assert!(start.elapsed() < limit, "no check within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn checks_in(server: &Server, seconds: u64) -> usize {
    let before = server.hits();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    server.hits() - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_protocol_from_waiting_for_the_database_to_a_graceful_stop() {
    let db = TestDb::migrated().await;
    let hung = fleet::spawn(Behaviour::Hang).await;
    register(&db, "hung", hung.port.into()).await;
    let proxy = Proxy::to_test_server().await;
    proxy.cut();
    let notify = NotifySocket::new();
    let config = fast_config("interval = \"10s\"\ntimeout = \"8s\"", "")
        .replace("shutdown_grace = \"2s\"", "shutdown_grace = \"1s\"");
    let mut daemon = Daemon::spawn(
        &proxy.url_for(&db),
        &config,
        &[
            ("NOTIFY_SOCKET", notify.path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );

    // Not ready while the database is unreachable, but saying why.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        notify.count("READY=1"),
        0,
        "READY before the database answered: {:?}",
        notify.lines()
    );
    assert!(
        notify
            .lines()
            .iter()
            .any(|(_, l)| l.starts_with("STATUS=waiting for the database"))
    );
    proxy.restore();
    notify.wait_for("READY=1", 0, Duration::from_secs(15));

    // WATCHDOG_USEC = 1 s: a ping every half second.
    let before = notify.count("WATCHDOG=1");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pings = notify.count("WATCHDOG=1") - before;
    assert!((4..=8).contains(&pings), "{pings} watchdog pings in 3 s");
    assert!(
        notify
            .lines()
            .iter()
            .any(|(_, l)| l.starts_with("STATUS=1 services")),
        "{:?}",
        notify.lines()
    );

    // Reload: RELOADING=1, then READY=1 again.
    daemon.signal("HUP");
    notify.wait_for("RELOADING=1", 0, Duration::from_secs(5));
    notify.wait_for("READY=1", 1, Duration::from_secs(5));

    // A check of the hung service starts (it would take the 8 s timeout); stop right then.
    wait_hit(&hung, Duration::from_secs(12)).await;
    let asked = Instant::now();
    daemon.signal("TERM");
    let code = loop {
        if let Some(code) = daemon.try_exit() {
            break code;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(6),
            "still running {:?} after SIGTERM",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = asked.elapsed();
    assert_eq!(code, Some(0));
    assert!(
        took < Duration::from_secs(3),
        "stopping took {took:?}: the 1 s grace was not honoured"
    );
    assert_eq!(notify.count("STOPPING=1"), 1);
    let events = daemon.events();
    assert!(
        events.iter().any(|e| e["event"] == "checks_abandoned"),
        "the hung check was cancelled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_interval_and_survives_a_broken_file() {
    let db = TestDb::migrated().await;
    let server = fleet::spawn(Behaviour::Healthy).await;
    register(&db, "svc", server.port.into()).await;
    let slow = fast_config("interval = \"1s\"\ntimeout = \"500ms\"", "");
    let daemon = Daemon::start(&db.url, &slow);
    wait_hit(&server, Duration::from_secs(3)).await;
    let at_1s = checks_in(&server, 3).await;

    daemon.write_config(&fast_config(
        "interval = \"200ms\"\ntimeout = \"150ms\"",
        "",
    ));
    daemon.signal("HUP");
    daemon.wait_for(|e| e["event"] == "config_reloaded", Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_200ms = checks_in(&server, 3).await;
    assert!(
        at_1s <= 5 && at_200ms >= 3 * at_1s.max(2),
        "checks in 3 s: {at_1s} at 1 s, {at_200ms} at 200 ms"
    );

    daemon.write_config(&fast_config("interval = \"fast\"\ntimeout = \"150ms\"", ""));
    daemon.signal("HUP");
    let failed = daemon.wait_for(|e| e["event"] == "reload_failed", Duration::from_secs(5));
    assert!(
        failed["error"].as_str().unwrap().contains("probe.interval"),
        "{failed}"
    );
    let still = checks_in(&server, 2).await;
    assert!(
        still >= 6,
        "the old 200 ms configuration stays in force: {still} checks in 2 s"
    );
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_of_any_command_contains_the_database_password() {
    const SECRET: &str = "S3cret-Passw0rd";
    let db = TestDb::migrated().await;
    let server = fleet::spawn(Behaviour::Healthy).await;
    register(&db, "svc", server.port.into()).await;
    let mut url = url::Url::parse(db.url.expose()).unwrap();
    url.set_password(Some(SECRET)).unwrap(); // trust auth ignores it; every command still sees it
    let with_password = url.to_string();
    let mut unreachable = url.clone();
    unreachable.set_port(Some(1)).unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/registry");
    let commands: Vec<(Vec<&str>, String)> = vec![
        (vec!["config", "check"], with_password.clone()),
        (vec!["migrate"], with_password.clone()),
        (vec!["check"], with_password.clone()),
        (vec!["status"], with_password.clone()),
        (vec!["jobs", "list"], with_password.clone()),
        (vec!["jobs", "run", "housekeeping"], with_password.clone()),
        (
            vec!["registry", "import", samples.to_str().unwrap()],
            with_password.clone(),
        ),
        (vec!["legacy", "report"], with_password.clone()),
        (vec!["migrate"], unreachable.to_string()),
        (vec!["check"], unreachable.to_string()),
    ];
    for (args, url) in commands {
        let out = healthd(&args, &[("DATABASE_URL", &url), ("RUST_LOG", "debug")]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            !all.contains(SECRET),
            "`{}` printed the password:\n{all}",
            args.join(" ")
        );
    }
    let daemon = Daemon::spawn(
        &DatabaseUrl::parse(&with_password).unwrap(),
        &fast_config("interval = \"300ms\"\ntimeout = \"200ms\"", ""),
        &[("RUST_LOG", "debug")],
    );
    daemon.wait_for(|e| e["event"] == "daemon_started", Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = daemon.raw_log();
    let _ = daemon.stop();
    assert!(
        !log.contains(SECRET),
        "the daemon's log contains the password"
    );
}

#[test]
fn the_unit_file_verifies_and_is_hardened() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/verify-systemd-unit.sh"))
        .env("MCP_HEALTHD_BINARY", env!("CARGO_BIN_EXE_mcp-healthd"))
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stdout}\n{stderr}"
    );
    let exposure: f64 = stdout
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("exposure="))
        .unwrap_or_else(|| panic!("no exposure line:\n{stdout}"))
        .parse()
        .unwrap();
    assert!(exposure <= 2.0, "exposure {exposure}");
}
