//! Benchmark: 10,000 health endpoints served by nginx on loopback (scripts/bench-env.sh), the
//! release daemon checking them every 10 s (1,000 checks/s), against two baselines measured in
//! the same run on the same nginx:
//!   - the floor: `wrk` (a C event-loop client) making non-keep-alive GETs
//!     (`Connection: close`, a new connection per request), its CPU per request;
//!   - the peer: Prometheus' blackbox_exporter driven through its /probe endpoint.
//!
//! A check's cost counts every process doing its work: the daemon (user and kernel time) and
//! the PostgreSQL cluster (every `postgres` process) over the same window. Lag quantiles are
//! over the window too (the difference of two scrapes of the cumulative histogram).
//!
//! Run: `scripts/bench.sh` (or `cargo bench --bench scale` with root, apt and PostgreSQL).
//! Knobs: BENCH_TARGETS (10000), BENCH_SECONDS (120), BENCH_INTERVAL_S (10), BENCH_PERF (a
//! file: perf records the daemon's call graph over the window; `perf report -i FILE`).

mod common;
#[path = "../tests/it/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cluster_cpu, commits, cpu_seconds, cpu_split, env_or, flushes, peak_rss_mib};
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

/// Drives blackbox_exporter's /probe at `rate` per second; returns (probes, successes).
async fn drive_blackbox(
    url: &str,
    base_port: u16,
    targets: u16,
    rate: u64,
    seconds: u64,
) -> (u64, u64) {
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
        let probe = format!("{url}/probe?module=http_2xx&target=http://127.0.0.1:{port}/health");
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

#[tokio::main]
async fn main() {
    mcp_healthd::install_crypto_provider();
    let targets = env_or("BENCH_TARGETS", 10_000) as u16;
    let seconds = env_or("BENCH_SECONDS", 120);
    let interval = env_or("BENCH_INTERVAL_S", 10);
    let rate = u64::from(targets) / interval;

    let env = bench_env(&["up", &targets.to_string()]);
    let base_port: u16 = env["base_port"].parse().unwrap();
    let blackbox_pid: u32 = env["blackbox_pid"].parse().unwrap();
    println!(
        "nginx serving {targets} endpoints on 127.0.0.1:{base_port}..; daemon, floor and blackbox at {rate}/s for {seconds}s each"
    );

    let db = TestDb::migrated().await;
    sqlx::query(
        "INSERT INTO service_registry (service_type, name, display_name, port)
         SELECT 'svc_' || p, 'svc_' || p, 'svc ' || p, p FROM generate_series($1::int, $1::int + $2 - 1) p",
    )
    .bind(i32::from(base_port))
    .bind(i32::from(targets))
    .execute(&db.pool)
    .await
    .unwrap();

    // --- the daemon ---------------------------------------------------------------------------
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
             [log]\nformat = \"json\"\n[http]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
            (interval * 1000 / 2).min(5000)
        ),
    )
    .unwrap();
    let log_path = dir.path().join("daemon.log");
    let spawned = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-healthd"))
        .args(["-c", config.to_str().unwrap(), "run"])
        .env("DATABASE_URL", db.url.expose())
        .env("RUST_LOG", "info,mcp_healthd::pipeline::writer=debug")
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .spawn()
        .unwrap();
    let pid = child.id();
    while checked_services(&db).await < i64::from(targets) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the daemon exited ({status}):\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(120),
            "not every target was checked within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_checked = spawned.elapsed();
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
    let perf = std::env::var_os("BENCH_PERF").map(|file| {
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
    let rss = peak_rss_mib(pid);
    let lag1 = scrape().await;
    let log = read_log();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();

    let deltas: Vec<i64> = checks1
        .iter()
        .map(|(s, n)| n - checks0.get(s).copied().unwrap_or(0))
        .collect();
    let checks: i64 = deltas.iter().sum();
    let allowed = (elapsed / interval as f64).floor() as i64;
    // Snapshots are a flush apart from the clock: one check either side is boundary, not starvation.
    let starved =
        deltas.iter().filter(|&&d| d < allowed - 1).count() + (usize::from(targets) - deltas.len());
    let (min, max) = (
        deltas.iter().min().copied().unwrap_or(0),
        deltas.iter().max().copied().unwrap_or(0),
    );
    let (flush_count, flush_mean, flush_max) = flushes(&log, log0);
    // Lag over the window: the difference of the two cumulative histograms.
    let (p50, p99, lag_samples) =
        quantiles_between(&lag0, &lag1, "mcp_healthd_scheduler_lag_seconds");
    let (user, kernel) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    let daemon_cpu = user + kernel;
    let per = |cpu: f64| 1e6 * cpu / checks.max(1) as f64;
    let per_check_us = per(daemon_cpu);
    let db_us = per(pg1 - pg0);
    let sum_us = per_check_us + db_us;

    // --- the floor ----------------------------------------------------------------------------
    let (floor_n, floor_cpu) = tokio::task::spawn_blocking(move || wrk_floor(base_port, seconds))
        .await
        .unwrap();
    let floor_us = 1e6 * floor_cpu / floor_n.max(1) as f64;

    // --- the peer -----------------------------------------------------------------------------
    let bb0 = cpu_seconds(blackbox_pid);
    let bb_t0 = Instant::now();
    let (bb_sent, bb_ok) =
        drive_blackbox(&env["blackbox_url"], base_port, targets, rate, seconds).await;
    let bb_elapsed = bb_t0.elapsed().as_secs_f64();
    let bb_cpu = cpu_seconds(blackbox_pid) - bb0;
    let bb_us = 1e6 * bb_cpu / bb_sent.max(1) as f64;
    bench_env(&["down"]);

    let row = |name: &str, value: String, target: &str, met: Option<bool>| {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "",
        };
        println!("{name:<50} {value:>14}  {target:<22} {verdict}");
    };
    println!();
    println!(
        "mcp-healthd at scale: {targets} targets, {interval} s interval, {seconds} s per measurement"
    );
    println!("{:<50} {:>14}  {:<22}", "figure", "value", "target");
    row(
        "checks per second",
        format!("{:.0}", checks as f64 / elapsed),
        &format!("{rate}"),
        None,
    );
    let pct = 100.0 * daemon_cpu / elapsed;
    row(
        "daemon CPU, % of one core",
        format!("{pct:.1}"),
        "< 25",
        Some(pct < 25.0),
    );
    row(
        "daemon CPU per check: user + kernel (µs)",
        format!("{:.0} + {:.0}", per(user), per(kernel)),
        "",
        None,
    );
    row(
        "daemon CPU per check (µs)",
        format!("{per_check_us:.0}"),
        "",
        None,
    );
    row(
        "PostgreSQL cluster CPU per check (µs)",
        format!("{db_us:.0}"),
        "",
        None,
    );
    row(
        "daemon + PostgreSQL CPU per check (µs)",
        format!("{sum_us:.0}"),
        "",
        None,
    );
    row(
        "daemon peak RSS (MiB)",
        format!("{rss:.1}"),
        "< 64",
        Some(rss < 64.0),
    );
    row(
        "schedule lag in window p50 / p99 (ms, bucket bounds)",
        format!("{:.1} / {:.1}", p50 * 1e3, p99 * 1e3),
        "p99 <= 100",
        Some(p99 <= 0.1),
    );
    row("lag samples in window", format!("{lag_samples}"), "", None);
    row(
        "services checked fewer times than allowed",
        format!("{starved}"),
        "0",
        Some(starved == 0),
    );
    row(
        "checks per service in window (min / max)",
        format!("{min} / {max}"),
        &format!("{allowed}"),
        None,
    );
    // Each flush is one statement (store::flush); the status path makes no other.
    let status_sps = flush_count as f64 / elapsed;
    row(
        "statements per second on the status path",
        format!("{status_sps:.2}"),
        "<= 5",
        Some(status_sps <= 5.0),
    );
    let tps = (commits1 - commits0) as f64 / elapsed;
    row(
        "all transactions/s in the database (autovacuum too)",
        format!("{tps:.2}"),
        "",
        None,
    );
    row(
        "flush duration mean / max (ms)",
        format!("{flush_mean:.0} / {flush_max}"),
        "",
        None,
    );
    let first = all_checked.as_secs_f64();
    row(
        "time until every target was checked (s)",
        format!("{first:.1}"),
        &format!("< {interval}"),
        Some(first < interval as f64),
    );
    row(
        "floor: wrk (Connection: close) CPU per request (µs)",
        format!("{floor_us:.0}"),
        "",
        None,
    );
    row(
        "daemon CPU per check / floor",
        format!("{:.2}x", per_check_us / floor_us),
        "<= 2x",
        Some(per_check_us <= 2.0 * floor_us),
    );
    row(
        "daemon + PostgreSQL per check / floor",
        format!("{:.2}x", sum_us / floor_us),
        "<= 3x",
        Some(sum_us <= 3.0 * floor_us),
    );
    row(
        "blackbox_exporter probes per second achieved",
        format!("{:.0}", bb_sent as f64 / bb_elapsed),
        &format!("{rate}"),
        None,
    );
    row(
        "blackbox_exporter successful probes",
        format!("{bb_ok} / {bb_sent}"),
        "",
        None,
    );
    row(
        "blackbox_exporter CPU per probe (µs)",
        format!("{bb_us:.0}"),
        "",
        None,
    );
    row(
        "daemon CPU per check / blackbox per probe",
        format!("{:.2}", per_check_us / bb_us),
        "",
        None,
    );
    row(
        "daemon + PostgreSQL per check / blackbox per probe",
        format!("{:.2}", sum_us / bb_us),
        "<= 0.20",
        Some(sum_us * 5.0 <= bb_us),
    );
    row("floor requests made (wrk)", format!("{floor_n}"), "", None);
}
