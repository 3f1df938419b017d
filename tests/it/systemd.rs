//! Running under systemd: the notification protocol, reload on SIGHUP, a graceful stop with a
//! hung check in flight, the unit file, and no password in any output.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mcp_healthd::config::DatabaseUrl;
use mcp_healthd::plan::placement::phase;

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour, Server};
use crate::helpers::{TestDb, eventually, healthd, text};
use crate::prober::{register, wait_until_healthy};
use crate::proxy::Proxy;

/// A datagram socket standing in for systemd's NOTIFY_SOCKET; records every message with the
/// wall-clock time it arrived (the clock the daemon's log timestamps use).
struct NotifySocket {
    path: std::path::PathBuf,
    messages: Arc<Mutex<Vec<(SystemTime, String)>>>,
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
                sink.lock().unwrap().push((SystemTime::now(), text));
            }
        });
        Self {
            path,
            messages,
            _dir: dir,
        }
    }

    fn lines(&self) -> Vec<(SystemTime, String)> {
        let mut out = Vec::new();
        for (at, message) in self.messages.lock().unwrap().iter() {
            for line in message.lines() {
                out.push((*at, line.to_owned()));
            }
        }
        out
    }

    fn count(&self, line: &str) -> usize {
        self.times(line).len()
    }

    /// When each `line` arrived, in order.
    fn times(&self, line: &str) -> Vec<SystemTime> {
        self.lines()
            .into_iter()
            .filter(|(_, l)| l == line)
            .map(|(at, _)| at)
            .collect()
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

/// Waits for `n` more checks of `server` and returns their rate, per second.
async fn check_rate(server: &Server, n: usize) -> f64 {
    let start = Instant::now();
    let target = server.hits() + n;
    eventually(
        "checks for the rate",
        Duration::from_secs(30),
        async || match server.hits() >= target {
            true => Ok(()),
            false => Err(format!("{} of {target} checks", server.hits())),
        },
    )
    .await;
    n as f64 / start.elapsed().as_secs_f64()
}

/// The time a log event was written, from its `timestamp` field.
fn logged_at(event: &serde_json::Value) -> SystemTime {
    let at = event["timestamp"]
        .as_str()
        .expect("a timestamp on every event");
    chrono::DateTime::parse_from_rfc3339(at)
        .unwrap_or_else(|e| panic!("timestamp {at:?}: {e}"))
        .into()
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

    // Not ready while the database is unreachable, but saying why: after two failed attempts
    // to connect, still no READY.
    eventually(
        "two failed connection attempts reported",
        Duration::from_secs(15),
        async || {
            let lines = notify.lines();
            let waiting = lines
                .iter()
                .filter(|(_, l)| l.starts_with("STATUS=waiting for the database"))
                .count();
            match waiting >= 2 {
                true => Ok(()),
                false => Err(lines),
            }
        },
    )
    .await;
    assert_eq!(
        notify.count("READY=1"),
        0,
        "READY before the database answered: {:?}",
        notify.lines()
    );
    proxy.restore();
    notify.wait_for("READY=1", 0, Duration::from_secs(15));

    // WATCHDOG_USEC = 1 s: a ping every half second. Over six pings, the mean spacing is well
    // within the second systemd allows, and they are not a burst.
    let before = notify.count("WATCHDOG=1");
    let pings = eventually("six watchdog pings", Duration::from_secs(15), async || {
        let times = notify.times("WATCHDOG=1");
        match times.len() >= before + 6 {
            true => Ok(times[before..before + 6].to_vec()),
            false => Err(times.len() - before),
        }
    })
    .await;
    let spacing = pings[5].duration_since(pings[0]).unwrap() / 5;
    assert!(
        (Duration::from_millis(250)..=Duration::from_millis(1000)).contains(&spacing),
        "watchdog pings {spacing:?} apart on average"
    );
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

/// The daemon vouches for its prober only while checks keep completing: it expects one at
/// least every `probe.interval + probe.timeout + 5 s`. A check is bounded by its timeout, and a
/// service's own `health.timeout` may be as long as the interval, so here the only service
/// hangs with a 12 s timeout while `probe.timeout` is 100 ms, and its name puts its first
/// check late in the first round (at 0.6 of its phase, about 7.1 s): no check completes until
/// about 19.1 s, past the 17.1 s the daemon allows. The watchdog pings stop meanwhile, and
/// resume once the check completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_is_withheld_while_no_check_completes() {
    let interval = Duration::from_secs(12);
    let name = (0..)
        .map(|i| format!("hung{i}"))
        .find(|n| phase(n, interval) >= interval.mul_f64(0.99))
        .unwrap();
    let db = TestDb::migrated().await;
    let hung = fleet::spawn(Behaviour::Hang).await;
    register(&db, &name, hung.port.into()).await;
    sqlx::query("UPDATE service_registry SET service_config = $1 WHERE service_type = $2")
        .bind(serde_json::json!({"health": {"timeout": "12s"}}))
        .bind(&name)
        .execute(&db.pool)
        .await
        .unwrap();
    let notify = NotifySocket::new();
    let daemon = Daemon::spawn(
        &db.url,
        &fast_config("interval = \"12s\"\ntimeout = \"100ms\"", ""),
        &[
            ("NOTIFY_SOCKET", notify.path.to_str().unwrap()),
            ("WATCHDOG_USEC", "500000"),
        ],
    );

    // Withheld, then (a ping after the last withheld tick) resumed.
    let withheld = eventually(
        "the watchdog withheld, then resumed",
        Duration::from_secs(60),
        async || {
            let withheld: Vec<serde_json::Value> = daemon
                .events()
                .into_iter()
                .filter(|e| e["event"] == "watchdog_withheld")
                .collect();
            let resumed = withheld.last().is_some_and(|last| {
                let last = logged_at(last);
                notify.times("WATCHDOG=1").iter().any(|at| *at > last)
            });
            match resumed {
                true => Ok(withheld),
                false => Err(format!("{} withheld", withheld.len())),
            }
        },
    )
    .await;
    assert!(
        withheld[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("no check has completed for"),
        "{}",
        withheld[0]
    );
    // One tick every 250 ms over the ~2 s without a completed check.
    assert!(withheld.len() >= 4, "{withheld:#?}");
    let pings = notify.times("WATCHDOG=1");
    let first = logged_at(&withheld[0]);
    assert!(
        pings.iter().any(|at| *at < first),
        "pings before the checks stalled"
    );
    // Between the second and the last withheld tick, not one ping (each bound is at least a
    // tick away from the last ping before and the first after).
    let (from, to) = (
        logged_at(&withheld[1]),
        logged_at(&withheld[withheld.len() - 1]),
    );
    let during: Vec<_> = pings
        .iter()
        .filter(|at| (from..=to).contains(*at))
        .collect();
    assert!(during.is_empty(), "pings while withheld: {during:?}");
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_interval_and_survives_a_broken_file() {
    let db = TestDb::migrated().await;
    let server = fleet::spawn(Behaviour::Healthy).await;
    register(&db, "svc", server.port.into()).await;
    let slow = fast_config("interval = \"1s\"\ntimeout = \"500ms\"", "");
    let daemon = Daemon::start(&db.url, &slow);
    wait_hit(&server, Duration::from_secs(5)).await;
    let at_1s = check_rate(&server, 3).await;

    daemon.write_config(&fast_config(
        "interval = \"200ms\"\ntimeout = \"150ms\"",
        "",
    ));
    daemon.signal("HUP");
    daemon.wait_for(|e| e["event"] == "config_reloaded", Duration::from_secs(10));
    let at_200ms = check_rate(&server, 10).await;
    // Five times as often; a machine slow enough to halve the new rate still passes.
    assert!(
        at_1s <= 1.5 && at_200ms >= 2.5 * at_1s.max(1.0),
        "checks per second: {at_1s:.2} at 1 s, {at_200ms:.2} at 200 ms"
    );

    daemon.write_config(&fast_config("interval = \"fast\"\ntimeout = \"150ms\"", ""));
    daemon.signal("HUP");
    let failed = daemon.wait_for(|e| e["event"] == "reload_failed", Duration::from_secs(10));
    assert!(
        failed["error"].as_str().unwrap().contains("probe.interval"),
        "{failed}"
    );
    let still = check_rate(&server, 10).await;
    assert!(
        still >= 2.5 * at_1s.max(1.0),
        "the old 200 ms configuration stays in force: {still:.2} checks per second"
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
    // Checked, judged and written, all logged at debug level.
    wait_until_healthy(
        &db,
        "svc",
        "the service checked and written",
        Duration::from_secs(15),
    )
    .await;
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
