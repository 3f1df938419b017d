//! Benchmark: health endpoints served by nginx on loopback (scripts/bench-env.sh), the release
//! daemon checking them, against two baselines measured in the same run on the same nginx:
//!   - the floor: `wrk` (a C event-loop client) making non-keep-alive GETs
//!     (`Connection: close`, a new connection per request), its CPU per request;
//!   - the peer: Prometheus' blackbox_exporter driven through its /probe endpoint, over http and
//!     over https.
//!
//! Three daemon runs, each on a fresh database whose rollups already hold a day of history (so
//! the status path's uptime work is what it is in production):
//!   1. plain: 10,000 http services every 10 s (1,000 checks/s);
//!   2. mixed: the same with 10% of them https (a test CA, full handshakes); the cost of an https
//!      check is worked out from runs 1 and 2 (same rate, same fleet size);
//!   3. capacity: 65,535 services (the registry's limit: `port` is unique) every 10 s, sharing
//!      the same nginx endpoints through `base_url`.
//!
//! A check's cost counts every process doing its work: the daemon (user and kernel time) and
//! the PostgreSQL cluster (every `postgres` process) over the same window. Lag quantiles are
//! over the window too (the difference of two scrapes of the cumulative histogram).
//!
//! Run: `scripts/bench.sh` (or `cargo bench --bench scale` with root, apt and PostgreSQL).
//! Knobs: BENCH_TARGETS (10000), BENCH_SECONDS (60), BENCH_INTERVAL_S (10), BENCH_CAPACITY
//! (65535; 0 skips run 3), BENCH_CAPACITY_SECONDS (120), BENCH_HISTORY_HOURS (23),
//! BENCH_THREADS (run 3 once per MCP_HEALTHD_WORKER_THREADS in this list; "1,2"),
//! BENCH_PERF (a file: perf records the daemon's call graph over run 1's window, or run 3's
//! with BENCH_PERF_RUN=3).

mod common;
#[path = "../tests/it/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::collections::HashMap;
use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    cluster_cpu, commits, cpu_seconds, cpu_split, current_rss_mib, env_or, flushes, peak_rss_mib,
};
use helpers::TestDb;

fn bench_env(args: &[&str]) -> HashMap<String, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench-env.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "bench-env.sh {args:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn per_service_checks(db: &TestDb) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT service_type::text, sum(checks)::bigint FROM service_health_rollups GROUP BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

async fn checked_services(db: &TestDb) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM service_health_status WHERE last_health_check IS NOT NULL",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// A Prometheus histogram's cumulative buckets, (upper bound, count), sorted.
fn buckets(metrics: &str, name: &str) -> Vec<(f64, u64)> {
    let mut buckets: Vec<(f64, u64)> = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// p50 and p99 (bucket upper bounds) and the sample count of the observations made between
/// two scrapes of one histogram: the difference of the cumulative buckets.
fn quantiles_between(before: &str, after: &str, name: &str) -> (f64, f64, u64) {
    let earlier = buckets(before, name);
    let buckets: Vec<(f64, u64)> = buckets(after, name)
        .into_iter()
        .map(|(le, n)| {
            let old = earlier.iter().find(|b| b.0 == le).map_or(0, |b| b.1);
            (le, n.saturating_sub(old))
        })
        .collect();
    let total = buckets.last().map_or(0, |b| b.1);
    let at = |q: f64| {
        let want = (q * total as f64).ceil() as u64;
        buckets
            .iter()
            .find(|b| b.1 >= want)
            .map_or(f64::NAN, |b| b.0)
    };
    (at(0.5), at(0.99), total)
}

/// CPU seconds of this process's children that have been waited for (user + kernel).
fn children_cpu() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The floor: `wrk` with `Connection: close` against one of the endpoints for `seconds`
/// (one thread, 16 connections, flat out). Returns (requests, wrk's CPU seconds).
fn wrk_floor(port: u16, seconds: u64) -> (u64, f64) {
    let cpu0 = children_cpu();
    let out = Command::new("wrk")
        .args([
            "-t1",
            "-c16",
            &format!("-d{seconds}s"),
            "-H",
            "Connection: close",
        ])
        .arg(format!("http://127.0.0.1:{port}/health"))
        .output()
        .expect("wrk (scripts/bench-env.sh installs it)");
    let cpu = children_cpu() - cpu0;
    let text = String::from_utf8_lossy(&out.stdout);
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
    (requests, cpu)
}

/// `strace -c -f` over `args` (a `-p PID` to attach for `attach`, or a command to run): the
/// total number of system calls from its summary, and the traced command's stdout.
fn strace_calls(args: &[&str], attach: Option<Duration>) -> (u64, String) {
    let summary = tempfile::NamedTempFile::new().unwrap();
    let mut command = match attach {
        Some(d) => {
            let mut c = Command::new("timeout");
            c.args(["-s", "INT", &d.as_secs().to_string(), "strace"]);
            c
        }
        None => Command::new("strace"),
    };
    let out = command
        .args(["-c", "-f", "-o"])
        .arg(summary.path())
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("strace (Debian's strace)");
    let text = std::fs::read_to_string(summary.path()).unwrap_or_default();
    let calls = text
        .lines()
        .find(|l| l.trim_end().ends_with(" total"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or_else(|| panic!("no total in strace's summary:\n{text}"));
    (calls, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// System calls per request of the floor: wrk under strace for 10 s.
fn wrk_syscalls(port: u16) -> f64 {
    let url = format!("http://127.0.0.1:{port}/health");
    let (calls, text) = strace_calls(
        &[
            "wrk",
            "-t1",
            "-c16",
            "-d10s",
            "-H",
            "Connection: close",
            &url,
        ],
        None,
    );
    let requests: u64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
    calls as f64 / requests.max(1) as f64
}

/// Drives blackbox_exporter's /probe at `rate` per second; returns (probes, successes).
async fn drive_blackbox(
    url: &str,
    https: bool,
    base_port: u16,
    targets: u16,
    rate: u64,
    seconds: u64,
) -> (u64, u64) {
    let (module, scheme) = if https {
        ("https_2xx", "https")
    } else {
        ("http_2xx", "http")
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = tokio::task::JoinSet::new();
    let started = tokio::time::Instant::now();
    let (mut sent, mut ok) = (0u64, 0u64);
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep_until(started + Duration::from_micros(sent * 1_000_000 / rate)).await;
        let permit = limit.clone().acquire_owned().await.unwrap();
        let port = base_port + (sent % u64::from(targets)) as u16;
        let probe =
            format!("{url}/probe?module={module}&target={scheme}://127.0.0.1:{port}/health");
        let client = client.clone();
        tasks.spawn(async move {
            let _permit = permit;
            match client.get(probe).send().await {
                Ok(r) => r
                    .text()
                    .await
                    .map(|t| t.contains("probe_success 1"))
                    .unwrap_or(false),
                Err(e) => {
                    eprintln!("blackbox request failed: {e:#}");
                    false
                }
            }
        });
        sent += 1;
        while let Some(done) = tasks.try_join_next() {
            ok += u64::from(done.unwrap_or(false));
        }
    }
    while let Some(r) = tasks.join_next().await {
        ok += u64::from(r.unwrap_or(false));
    }
    (sent, ok)
}

/// One daemon run's figures, over its measurement window.
struct Run {
    services: u32,
    checks: i64,
    elapsed: f64,
    user: f64,
    kernel: f64,
    pg: f64,
    rss_mib: f64,
    /// Resident at the end of the window (the peak includes start-up's transients).
    rss_now_mib: f64,
    p50: f64,
    p99: f64,
    lag_samples: u64,
    starved: usize,
    min_max: (i64, i64),
    allowed: i64,
    flushes: (usize, f64, u64),
    tps: f64,
    first_round: f64,
    /// System calls per check, counted by strace after the window (run 1 only).
    syscalls_per_check: Option<f64>,
}

impl Run {
    fn per_check(&self, cpu: f64) -> f64 {
        1e6 * cpu / self.checks.max(1) as f64
    }
    fn daemon_us(&self) -> f64 {
        self.per_check(self.user + self.kernel)
    }
    fn pg_us(&self) -> f64 {
        self.per_check(self.pg)
    }
    fn rate(&self) -> f64 {
        self.checks as f64 / self.elapsed
    }
}

/// What a daemon run checks: `services` registry rows (ports 1..=services, so any number up to
/// the registry's 65,535), the first `https` of them on the TLS endpoints, the rest on the
/// plain ones, each endpoint shared round-robin.
struct Fleet<'a> {
    env: &'a HashMap<String, String>,
    services: u32,
    https: u32,
}

impl Fleet<'_> {
    async fn register(&self, db: &TestDb, history_hours: i64) {
        let port = |k: &str| self.env[k].parse::<i32>().unwrap();
        sqlx::query(
            "INSERT INTO service_registry (service_type, name, display_name, port, base_url)
             SELECT 'svc_' || p, 'svc_' || p, 'svc ' || p, p,
                    CASE WHEN p <= $3
                         THEN 'https://127.0.0.1:' || ($4 + (p - 1) % $5)
                         ELSE 'http://127.0.0.1:' || ($1 + (p - 1) % $2) END
               FROM generate_series(1, $6::int) p",
        )
        .bind(port("base_port"))
        .bind(port("targets"))
        .bind(self.https as i32)
        .bind(port("tls_base_port"))
        .bind(port("tls_targets").max(1))
        .bind(self.services as i32)
        .execute(&db.pool)
        .await
        .unwrap();
        // A day of history before this hour, as a daemon that has run a while has: the status
        // path's uptime is over the window (24 h), so its cost depends on it.
        sqlx::query(
            "INSERT INTO service_health_rollups (service_type, hour, checks, failures, latency_sum_ms, latency_max_ms)
             SELECT service_type, date_trunc('hour', now()) - h * interval '1 hour', 360, 1, 360, 3
               FROM service_registry, generate_series(1, $1::int) h",
        )
        .bind(history_hours as i32)
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query("VACUUM ANALYZE service_health_rollups")
            .execute(&db.pool)
            .await
            .unwrap();
    }
}

/// Starts the release daemon on `fleet` at `interval`, waits until every service is checked,
/// lets it settle for an interval, and measures it over `seconds`.
async fn measure(
    fleet: &Fleet<'_>,
    interval: u64,
    seconds: u64,
    perf: Option<OsString>,
    threads: Option<String>,
    strace: bool,
) -> Run {
    let db = TestDb::migrated().await;
    fleet
        .register(&db, env_or("BENCH_HISTORY_HOURS", 23) as i64)
        .await;
    let targets = fleet.services;
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[probe]\ninterval = \"{interval}s\"\ntimeout = \"{}ms\"\nconcurrency = 256\n\
             ca_file = \"{}\"\n\
             [log]\nformat = \"json\"\n[http]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
            (interval * 1000 / 2).min(5000),
            fleet.env["ca_file"],
        ),
    )
    .unwrap();
    let log_path = dir.path().join("daemon.log");
    let spawned = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-healthd"));
    command
        .args(["-c", config.to_str().unwrap(), "run"])
        .env("DATABASE_URL", db.url.expose())
        .env("RUST_LOG", "info,mcp_healthd::pipeline::writer=debug")
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()));
    if let Some(threads) = threads {
        command.env("MCP_HEALTHD_WORKER_THREADS", threads);
    }
    let mut child = command.spawn().unwrap();
    let pid = child.id();
    while checked_services(&db).await < i64::from(targets) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the daemon exited ({status}):\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(120 + interval),
            "not every target was checked within {} s",
            120 + interval
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_round = spawned.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(interval)).await; // steady state

    let scrape = || async {
        reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let (lag0, log0) = (scrape().await, read_log().len());
    let (cpu0, checks0, commits0) = (
        cpu_split(pid),
        per_service_checks(&db).await,
        commits(&db.pool).await,
    );
    let pg0 = cluster_cpu();
    let t0 = Instant::now();
    // BENCH_PERF=FILE: perf samples the daemon over the window (its own CPU adds to the
    // figures of that run: profile in one run, measure in another).
    let perf = perf.map(|file| {
        Command::new("perf")
            .args(["record", "-g", "-F", "499", "-p", &pid.to_string(), "-o"])
            .arg(file)
            .args(["--", "sleep", &seconds.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf (Debian's linux-perf)")
    });
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    if let Some(mut perf) = perf {
        perf.wait().unwrap();
    }
    let pg1 = cluster_cpu();
    let (cpu1, checks1, commits1) = (
        cpu_split(pid),
        per_service_checks(&db).await,
        commits(&db.pool).await,
    );
    let elapsed = t0.elapsed().as_secs_f64();
    let rss_mib = peak_rss_mib(pid);
    let rss_now_mib = current_rss_mib(pid);
    let lag1 = scrape().await;
    let log = read_log();
    // After the window (strace slows what it traces): system calls per check over 10 s.
    let syscalls_per_check = match strace {
        false => None,
        true => {
            let before = per_service_checks(&db).await;
            let pid = pid.to_string();
            let out = tokio::task::spawn_blocking(move || {
                strace_calls(&["-p", &pid], Some(Duration::from_secs(10))).0
            })
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await; // the last flush
            let after = per_service_checks(&db).await;
            let checks: i64 = after
                .iter()
                .map(|(s, n)| n - before.get(s).copied().unwrap_or(0))
                .sum();
            Some(out as f64 / checks.max(1) as f64)
        }
    };
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();

    let deltas: Vec<i64> = checks1
        .iter()
        .map(|(s, n)| n - checks0.get(s).copied().unwrap_or(0))
        .collect();
    let allowed = (elapsed / interval as f64).floor() as i64;
    // Snapshots are a flush apart from the clock: one check either side is boundary, not starvation.
    let starved = deltas.iter().filter(|&&d| d < allowed - 1).count()
        + (targets as usize).saturating_sub(deltas.len());
    let (p50, p99, lag_samples) =
        quantiles_between(&lag0, &lag1, "mcp_healthd_scheduler_lag_seconds");
    Run {
        services: targets,
        checks: deltas.iter().sum(),
        elapsed,
        user: cpu1.0 - cpu0.0,
        kernel: cpu1.1 - cpu0.1,
        pg: pg1 - pg0,
        rss_mib,
        rss_now_mib,
        p50,
        p99,
        lag_samples,
        starved,
        min_max: (
            deltas.iter().min().copied().unwrap_or(0),
            deltas.iter().max().copied().unwrap_or(0),
        ),
        allowed,
        flushes: flushes(&log, log0),
        tps: (commits1 - commits0) as f64 / elapsed,
        first_round,
        syscalls_per_check,
    }
}

/// Blackbox's CPU per probe (µs) at `rate` for `seconds`, with (sent, ok, achieved rate).
async fn blackbox(
    env: &HashMap<String, String>,
    https: bool,
    rate: u64,
    seconds: u64,
) -> (f64, u64, u64, f64) {
    let pid: u32 = env["blackbox_pid"].parse().unwrap();
    let (base, n) = if https {
        (&env["tls_base_port"], &env["tls_targets"])
    } else {
        (&env["base_port"], &env["targets"])
    };
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let (sent, ok) = drive_blackbox(
        &env["blackbox_url"],
        https,
        base.parse().unwrap(),
        n.parse().unwrap(),
        rate,
        seconds,
    )
    .await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    (
        1e6 * cpu / sent.max(1) as f64,
        sent,
        ok,
        sent as f64 / elapsed,
    )
}

fn row(name: &str, value: String, target: &str, met: Option<bool>) {
    let verdict = match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "",
    };
    println!("{name:<56} {value:>14}  {target:<16} {verdict}");
}

/// The rows every run prints.
fn run_rows(run: &Run, interval: u64) {
    let rate = u64::from(run.services) / interval;
    row(
        "checks per second",
        format!("{:.0}", run.rate()),
        &format!("{rate}"),
        None,
    );
    row(
        "daemon CPU, % of one core",
        format!("{:.1}", 100.0 * (run.user + run.kernel) / run.elapsed),
        "",
        None,
    );
    row(
        "daemon CPU per check: user + kernel (µs)",
        format!(
            "{:.0} + {:.0}",
            run.per_check(run.user),
            run.per_check(run.kernel)
        ),
        "",
        None,
    );
    row(
        "daemon CPU per check (µs)",
        format!("{:.0}", run.daemon_us()),
        "",
        None,
    );
    row(
        "PostgreSQL cluster CPU per check (µs)",
        format!("{:.0}", run.pg_us()),
        "",
        None,
    );
    row(
        "PostgreSQL cluster CPU, % of one core",
        format!("{:.1}", 100.0 * run.pg / run.elapsed),
        "",
        None,
    );
    row(
        "daemon + PostgreSQL CPU per check (µs)",
        format!("{:.0}", run.daemon_us() + run.pg_us()),
        "",
        None,
    );
    row(
        "daemon peak RSS (MiB)",
        format!("{:.1}", run.rss_mib),
        "",
        None,
    );
    row(
        "daemon RSS at the end of the window (MiB)",
        format!("{:.1}", run.rss_now_mib),
        "",
        None,
    );
    row(
        "daemon RSS per service at the end (KiB)",
        format!("{:.2}", run.rss_now_mib * 1024.0 / f64::from(run.services)),
        "",
        None,
    );
    row(
        "schedule lag in window p50 / p99 (ms, bucket bounds)",
        format!("{:.1} / {:.1}", run.p50 * 1e3, run.p99 * 1e3),
        "p99 <= 100",
        Some(run.p99 <= 0.1),
    );
    row(
        "lag samples in window",
        format!("{}", run.lag_samples),
        "",
        None,
    );
    row(
        "services checked fewer times than allowed (stale)",
        format!("{}", run.starved),
        "0",
        Some(run.starved == 0),
    );
    row(
        "checks per service in window (min / max)",
        format!("{} / {}", run.min_max.0, run.min_max.1),
        &format!("{}", run.allowed),
        None,
    );
    let (count, mean, max) = run.flushes;
    let status_sps = count as f64 / run.elapsed;
    row(
        "statements per second on the status path",
        format!("{status_sps:.2}"),
        "<= 5",
        Some(status_sps <= 5.0),
    );
    row(
        "all transactions/s in the database (autovacuum too)",
        format!("{:.2}", run.tps),
        "",
        None,
    );
    row(
        "flush duration mean / max (ms)",
        format!("{mean:.0} / {max}"),
        "",
        None,
    );
    row(
        "time until every service was checked (s)",
        format!("{:.1}", run.first_round),
        &format!("< {interval}"),
        Some(run.first_round < interval as f64),
    );
}

#[tokio::main]
async fn main() {
    mcp_healthd::install_crypto_provider();
    let targets = env_or("BENCH_TARGETS", 10_000) as u32;
    let seconds = env_or("BENCH_SECONDS", 60);
    let interval = env_or("BENCH_INTERVAL_S", 10);
    let capacity = env_or("BENCH_CAPACITY", 65_535).min(65_535) as u32;
    let capacity_seconds = env_or("BENCH_CAPACITY_SECONDS", 120);
    let rate = u64::from(targets) / interval;
    let https = targets / 10;

    let env = bench_env(&["up", &targets.to_string()]);
    println!(
        "nginx: {targets} http endpoints from 127.0.0.1:{}, {} https from :{}; \
         {seconds} s per measurement at {rate}/s",
        env["base_port"], env["tls_targets"], env["tls_base_port"]
    );

    // --- the daemon: plain, then mixed --------------------------------------------------------
    let plain_fleet = Fleet {
        env: &env,
        services: targets,
        https: 0,
    };
    // BENCH_PERF records run 1, or the run BENCH_PERF_RUN names (1 or 3).
    let perf_run = env_or("BENCH_PERF_RUN", 1);
    let perf = |run| match perf_run == run {
        true => std::env::var_os("BENCH_PERF"),
        false => None,
    };
    let plain = measure(&plain_fleet, interval, seconds, perf(1), None, true).await;
    let mixed_fleet = Fleet {
        env: &env,
        services: targets,
        https,
    };
    let mixed = measure(&mixed_fleet, interval, seconds, None, None, false).await;

    // --- the floor and the peer ---------------------------------------------------------------
    let base_port: u16 = env["base_port"].parse().unwrap();
    let (floor_n, floor_cpu) = tokio::task::spawn_blocking(move || wrk_floor(base_port, seconds))
        .await
        .unwrap();
    let floor_us = 1e6 * floor_cpu / floor_n.max(1) as f64;
    let floor_syscalls = tokio::task::spawn_blocking(move || wrk_syscalls(base_port))
        .await
        .unwrap();
    let (bb_us, bb_sent, bb_ok, bb_rate) = blackbox(&env, false, rate, seconds).await;
    let https_rate = (rate / 10).max(1);
    let (bbs_us, bbs_sent, bbs_ok, bbs_rate) = blackbox(&env, true, https_rate, seconds).await;

    // --- capacity -----------------------------------------------------------------------------
    // Run 3 once per thread count (BENCH_THREADS, default "1,2"): one thread is the default;
    // the second shows whether a pool pays once one core's worth of checks is near.
    let threads: Vec<String> = std::env::var("BENCH_THREADS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    let mut caps = Vec::new();
    if capacity > 0 {
        let fleet = Fleet {
            env: &env,
            services: capacity,
            https: 0,
        };
        for (i, t) in threads.iter().enumerate() {
            let profile = if i == 0 { perf(3) } else { None };
            let run = measure(
                &fleet,
                interval,
                capacity_seconds,
                profile,
                Some(t.clone()),
                false,
            );
            caps.push((t.clone(), run.await));
        }
    }
    bench_env(&["down"]);

    println!();
    println!("mcp-healthd check cost, {interval} s interval");
    println!("{:<56} {:>14}  {:<16}", "figure", "value", "target");
    println!("-- 1. plain http: {targets} services, {seconds} s window");
    run_rows(&plain, interval);
    let (daemon_us, sum_us) = (plain.daemon_us(), plain.daemon_us() + plain.pg_us());
    row(
        "floor: wrk (Connection: close) CPU per request (µs)",
        format!("{floor_us:.0}"),
        "",
        None,
    );
    row("floor requests made (wrk)", format!("{floor_n}"), "", None);
    row(
        "system calls per check / per wrk request (strace -c -f, 10 s)",
        format!(
            "{:.1} / {floor_syscalls:.1}",
            plain.syscalls_per_check.unwrap_or(f64::NAN)
        ),
        "",
        None,
    );
    row(
        "daemon CPU per check / floor",
        format!("{:.2}x", daemon_us / floor_us),
        "<= 2x",
        Some(daemon_us <= 2.0 * floor_us),
    );
    row(
        "daemon + PostgreSQL per check / floor",
        format!("{:.2}x", sum_us / floor_us),
        "<= 3x",
        Some(sum_us <= 3.0 * floor_us),
    );
    row(
        "blackbox_exporter http probes per second / successful",
        format!("{bb_rate:.0} / {bb_ok}/{bb_sent}"),
        &format!("{rate}"),
        None,
    );
    row(
        "blackbox_exporter CPU per http probe (µs)",
        format!("{bb_us:.0}"),
        "",
        None,
    );
    row(
        "daemon + PostgreSQL per check / blackbox per probe",
        format!("{:.2}", sum_us / bb_us),
        "<= 0.20",
        Some(sum_us * 5.0 <= bb_us),
    );
    row(
        "daemon CPU, % of one core",
        format!("{:.1}", 100.0 * (plain.user + plain.kernel) / plain.elapsed),
        "<= 10",
        Some(plain.user + plain.kernel <= 0.1 * plain.elapsed),
    );
    row(
        "daemon peak RSS (MiB)",
        format!("{:.1}", plain.rss_mib),
        "<= 48",
        Some(plain.rss_mib <= 48.0),
    );

    println!("-- 2. mixed: {targets} services, {https} of them https (full handshakes)");
    run_rows(&mixed, interval);
    // Same fleet size and rate: the mixed run's extra CPU per check is the https checks'.
    let share = f64::from(https) / f64::from(targets);
    let https_daemon = plain.daemon_us() + (mixed.daemon_us() - plain.daemon_us()) / share;
    let https_sum = https_daemon + mixed.pg_us();
    row(
        "daemon CPU per https check (µs, from runs 1 and 2)",
        format!("{https_daemon:.0}"),
        "",
        None,
    );
    row(
        "daemon + PostgreSQL per https check (µs)",
        format!("{https_sum:.0}"),
        "",
        None,
    );
    row(
        "blackbox_exporter https probes per second / successful",
        format!("{bbs_rate:.0} / {bbs_ok}/{bbs_sent}"),
        &format!("{https_rate}"),
        None,
    );
    row(
        "blackbox_exporter CPU per https probe (µs)",
        format!("{bbs_us:.0}"),
        "",
        None,
    );
    row(
        "daemon + PostgreSQL per https check / blackbox's",
        format!("{:.2}", https_sum / bbs_us),
        "",
        None,
    );

    for (threads, cap) in &caps {
        println!(
            "-- 3. capacity: {capacity} services, {capacity_seconds} s window, {threads} runtime thread(s)"
        );
        run_rows(cap, interval);
        let added = f64::from(cap.services.saturating_sub(plain.services).max(1));
        let per_added = (cap.rss_now_mib - plain.rss_now_mib) * 1024.0 * 1024.0 / added;
        row(
            "daemon RSS per service added over run 1, at the end (bytes)",
            format!("{per_added:.0}"),
            "<= 1024",
            Some(per_added <= 1024.0),
        );
    }
}
