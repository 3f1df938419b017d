//! Benchmark: the real daemon (release build) checking N loopback targets (default 1,000) at a
//! 1 s interval. Prints checks per second, the daemon's CPU time per check, its peak RSS, and
//! what the status path costs the database (flushes, transactions, flush duration).
//!
//! Run: `cargo bench --bench prober` (PostgreSQL at DATABASE_URL, as for the tests).
//! Knobs: BENCH_TARGETS (1000), BENCH_SECONDS (30).

mod common;
#[path = "../tests/it/fleet.rs"]
#[allow(dead_code)]
mod fleet;
#[path = "../tests/it/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cluster_cpu, commits, cpu_seconds, current_rss_mib, env_or, flushes, peak_rss_mib};
use helpers::TestDb;

async fn checks(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT coalesce(sum(checks), 0)::bigint FROM service_health_rollups")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::main]
async fn main() {
    mcp_healthd::install_crypto_provider();
    let targets = env_or("BENCH_TARGETS", 1000) as usize;
    let seconds = env_or("BENCH_SECONDS", 30);
    let db = TestDb::migrated().await;
    let mut servers = Vec::with_capacity(targets);
    for _ in 0..targets {
        servers.push(fleet::spawn(fleet::Behaviour::Healthy).await);
    }
    let ports: Vec<i32> = servers.iter().map(|s| i32::from(s.port)).collect();
    sqlx::query(
        "INSERT INTO service_registry (service_type, name, display_name, port)
         SELECT 'bench_' || p, 'bench_' || p, 'Bench ' || p, p FROM unnest($1::int[]) p",
    )
    .bind(&ports)
    .execute(&db.pool)
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[probe]\ninterval = \"1s\"\ntimeout = \"900ms\"\nconcurrency = 256\n[log]\nformat = \"json\"\n[http]\nlisten = \"\"\n",
    )
    .unwrap();
    let log_path = dir.path().join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-healthd"))
        .args(["-c", config.to_str().unwrap(), "run"])
        .env("DATABASE_URL", db.url.expose())
        .env("RUST_LOG", "info,mcp_healthd::pipeline::writer=debug")
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .spawn()
        .unwrap();
    let pid = child.id();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let started = Instant::now();
    while checks(&db).await < targets as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "daemon never checked everything:\n{}",
            read_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_checked = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await; // steady state

    let (cpu0, checks0, commits0, log0) = (
        cpu_seconds(pid),
        checks(&db).await,
        commits(&db.pool).await,
        read_log().len(),
    );
    let pg0 = cluster_cpu();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let pg1 = cluster_cpu();
    let (cpu1, checks1, commits1) = (cpu_seconds(pid), checks(&db).await, commits(&db.pool).await);
    let elapsed = t0.elapsed().as_secs_f64();
    let (rss, rss_now) = (peak_rss_mib(pid), current_rss_mib(pid));
    let (flush_count, flush_mean, flush_max) = flushes(&read_log(), log0);
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();

    let n = (checks1 - checks0) as f64;
    let cpu = cpu1 - cpu0;
    let txn = commits1 - commits0;
    println!();
    println!(
        "mcp-healthd prober benchmark: {targets} loopback targets, 1 s interval, {seconds} s measured"
    );
    println!("{:<44} {:>12}", "figure", "value");
    println!("{:<44} {:>12.0}", "checks per second", n / elapsed);
    println!(
        "{:<44} {:>12.1}",
        "daemon CPU, % of one core",
        100.0 * cpu / elapsed
    );
    println!(
        "{:<44} {:>12.1}",
        "daemon CPU per check (µs)",
        1e6 * cpu / n.max(1.0)
    );
    println!(
        "{:<44} {:>12.1}",
        "PostgreSQL cluster CPU per check (µs)",
        1e6 * (pg1 - pg0) / n.max(1.0)
    );
    println!("{:<44} {:>12.1}", "daemon peak RSS (MiB)", rss);
    println!("{:<44} {:>12.1}", "daemon RSS at the end (MiB)", rss_now);
    println!(
        "{:<44} {:>12.2}",
        "time until every target was checked (s)",
        all_checked.as_secs_f64()
    );
    println!("{:<44} {:>12}", "status flushes", flush_count);
    println!(
        "{:<44} {:>12.2}",
        "database transactions per flush",
        txn as f64 / flush_count.max(1) as f64
    );
    println!(
        "{:<44} {:>12.2}",
        "status-path statements per second",
        flush_count as f64 / elapsed
    );
    println!(
        "{:<44} {:>12.2}",
        "all transactions/s in the db (autovacuum too)",
        txn as f64 / elapsed
    );
    println!("{:<44} {:>12.1}", "flush duration mean (ms)", flush_mean);
    println!("{:<44} {:>12}", "flush duration max (ms)", flush_max);
}
