//! What the benchmarks share: knobs from the environment, a process's CPU time (user and
//! kernel) and peak memory from /proc, the PostgreSQL cluster's CPU time (every `postgres`
//! process), the database's commit counter, and the writer's flushes from the daemon's log.

use std::process::Command;

fn clock_ticks() -> f64 {
    String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let (user, kernel) = cpu_split(pid);
    user + kernel
}

/// (utime, stime) of a process, in seconds.
pub fn cpu_split(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    split_stat(&stat).map_or((0.0, 0.0), |(_, u, k)| (u, k))
}

/// (command name, utime s, stime s) from a /proc/PID/stat line.
fn split_stat(stat: &str) -> Option<(String, f64, f64)> {
    let (head, rest) = stat.rsplit_once(") ")?;
    let comm = head.split_once(" (")?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = clock_ticks();
    Some((
        comm,
        fields.get(11)?.parse::<f64>().ok()? / ticks,
        fields.get(12)?.parse::<f64>().ok()? / ticks,
    ))
}

/// CPU seconds (user + kernel) of every PostgreSQL server process now running: the cluster's
/// share of a check is the difference over a window (backends that end inside it are missed,
/// so this is a lower bound; the pool's connections live through the window).
pub fn cluster_cpu() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| split_stat(&stat))
        .filter(|(comm, _, _)| comm == "postgres")
        .map(|(_, u, k)| u + k)
        .sum()
}

/// Peak resident memory of a process, in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// Resident memory of a process now, in MiB.
pub fn current_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib / 1024.0
}

/// A numeric knob from the environment, or its default.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Transactions committed in the pool's database so far.
pub async fn commits(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// (count, mean ms, max ms) of the writer's flushes logged in `log` after byte `from`.
pub fn flushes(log: &str, from: usize) -> (usize, f64, u64) {
    let times: Vec<u64> = log[from..]
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["message"] == "flushed")
        .filter_map(|e| e["flush_ms"].as_u64())
        .collect();
    let mean = times.iter().sum::<u64>() as f64 / times.len().max(1) as f64;
    (times.len(), mean, times.iter().copied().max().unwrap_or(0))
}
