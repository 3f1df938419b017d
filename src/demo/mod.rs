//! `mcp-healthd demo`: a local tour in one command. It uses the configured PostgreSQL server if
//! it answers (in a database of its own, `mcp_healthd_demo`) or else starts a throwaway cluster;
//! serves the sample registry (built into the binary from `samples/registry`, or
//! `--samples DIR`) from loopback servers with mixed behaviours (`services`); runs the real
//! daemon against them; and redraws the status table until Ctrl-C. Then it stops everything it
//! started and removes what it created.
//!
//! The top layer with `commands`: may import anything below it.

mod postgres;
mod services;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::config::ConfigSource;
use crate::config::{Config, DatabaseUrl};
use crate::observe::telemetry;
use crate::registry::import;
use crate::store::dashboard;
use crate::store::db;
use crate::text::escape_control;
use postgres::Throwaway;
use services::Behaviour;

const DEMO_DATABASE: &str = "mcp_healthd_demo";

/// Where the demo's database lives, and how to take it away again.
enum DemoDatabase {
    /// A database of the demo's own on the configured server.
    OnServer {
        server: DatabaseUrl,
    },
    Throwaway(Throwaway),
}

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/samples.rs"));
}

/// The sample services: those of `--samples DIR` if given, else the ones built into the binary.
fn sample_entries(dir: Option<&Path>, config: &Config) -> anyhow::Result<Vec<import::Entry>> {
    Ok(match dir {
        Some(dir) => import::read_dir(dir, &config.probe)?,
        None => import::read_sources(
            embedded::SAMPLES.iter().map(|(name, text)| {
                (
                    Path::new("<built-in samples>")
                        .join(name)
                        .join("config.json"),
                    *text,
                )
            }),
            &config.probe,
        )?,
    })
}

async fn server_answers(url: &DatabaseUrl) -> bool {
    use sqlx::Connection;
    let connect = sqlx::PgConnection::connect(url.expose());
    matches!(
        tokio::time::timeout(Duration::from_secs(3), connect).await,
        Ok(Ok(_))
    )
}

async fn drop_database(server: &DatabaseUrl) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server.with_database("postgres").expose()).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {DEMO_DATABASE} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}

async fn open_database(config: &Config) -> anyhow::Result<(DemoDatabase, DatabaseUrl)> {
    // The server, not the configured database: on a fresh machine that database does not exist yet.
    if server_answers(&config.database.url.with_database("postgres")).await {
        let server = config.database.url.clone();
        drop_database(&server).await?; // a previous demo that was killed
        println!(
            "database: {DEMO_DATABASE} on the configured server {server} (dropped at the end)"
        );
        let url = server.with_database(DEMO_DATABASE);
        return Ok((DemoDatabase::OnServer { server }, url));
    }
    println!(
        "the configured database {} does not answer; starting a throwaway PostgreSQL",
        config.database.url
    );
    let cluster = Throwaway::start().await?;
    println!(
        "throwaway PostgreSQL pid {} in {} ({})",
        cluster.pid().unwrap_or(0),
        cluster.dir().display(),
        cluster.url
    );
    let url = cluster.url.with_database(DEMO_DATABASE);
    Ok((DemoDatabase::Throwaway(cluster), url))
}

fn demo_config(config: &Config, url: DatabaseUrl) -> Config {
    let mut c = config.clone();
    c.database.url = url;
    c.database.auto_migrate = true;
    c.database.flush_interval = Duration::from_millis(500);
    c.probe.interval = Duration::from_secs(2);
    c.probe.timeout = Duration::from_secs(1);
    c.probe.failure_threshold = 2;
    c.registry.refresh_interval = Duration::from_secs(5);
    c.jobs.lease_ttl = Duration::from_secs(6);
    // Show /metrics if the configured address is free; never fail the tour over it.
    c.http.listen = c
        .http
        .listen
        .filter(|a| std::net::TcpListener::bind(a).is_ok());
    c
}

/// The latest alert lines of the daemon's log, for under the table.
fn recent_alerts(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let alerts: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["event"]
                .as_str()
                .is_some_and(|ev| ev.starts_with("service_"))
        })
        .map(|e| {
            format!(
                "{} {:<20} {:<18} {}",
                e["timestamp"]
                    .as_str()
                    .unwrap_or("")
                    .get(11..19)
                    .unwrap_or(""),
                escape_control(e["event"].as_str().unwrap_or("")),
                escape_control(e["service_type"].as_str().unwrap_or("")),
                escape_control(e["error"].as_str().unwrap_or(""))
            )
        })
        .collect();
    alerts[alerts.len().saturating_sub(6)..].to_vec()
}

pub async fn run(
    config: Config,
    source: ConfigSource,
    samples: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    // A new private directory of unpredictable name, and a log file that must not exist yet:
    // nothing is opened through a link another user planted. Removed on every way out.
    let work = tempfile::Builder::new()
        .prefix("mcp-healthd-demo-log-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .context("cannot create the demo's temporary directory")?;
    let log = work.path().join("daemon.log");
    let handle = telemetry::init_to_file(&config.log, &log)?;

    let (database, url) = open_database(&config).await?;
    let config = demo_config(&config, url);
    let result = tour(&config, source, samples.as_deref(), &log, handle).await;

    match database {
        DemoDatabase::OnServer { server } => drop_database(&server).await?,
        DemoDatabase::Throwaway(cluster) => cluster.stop()?,
    }
    let _ = work.close();
    println!("demo stopped; everything it started is stopped and what it created is removed");
    result
}

async fn tour(
    config: &Config,
    source: ConfigSource,
    samples: Option<&Path>,
    log: &Path,
    handle: Option<telemetry::LevelHandle>,
) -> anyhow::Result<ExitCode> {
    let mut entries = sample_entries(samples, config)?;
    let mut servers = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter_mut().enumerate() {
        let server = services::spawn(Behaviour::for_index(i)).await?;
        entry.port = i32::from(server.port);
        servers.push(server);
    }
    let (pool, _) = db::open(&config.database).await?;
    import::apply(&pool, &entries, true).await?;
    println!(
        "{} sample services on 127.0.0.1 (healthy, failing, slow, flapping, recovering); checks every {}s{}",
        entries.len(),
        config.probe.interval.as_secs(),
        config
            .http
            .listen
            .map(|a| format!("; metrics at http://{a}/metrics"))
            .unwrap_or_default()
    );
    println!("daemon log: {}  —  Ctrl-C to stop\n", log.display());

    let daemon = tokio::spawn(crate::daemon::run(config.clone(), source, handle));
    let terminal = std::io::stdout().is_terminal();
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(3));
    while !daemon.is_finished() {
        tick.tick().await;
        let Ok(rows) = dashboard::load(&pool).await else {
            continue;
        };
        let table = dashboard::render(&rows, chrono::Utc::now(), terminal);
        if terminal {
            print!("\x1b[2J\x1b[H");
        } else {
            println!("---- {}s ----", started.elapsed().as_secs());
        }
        print!("{table}");
        let alerts = recent_alerts(log);
        if !alerts.is_empty() {
            println!("\nrecent alerts:");
            for a in alerts {
                println!("  {a}");
            }
        }
        if terminal {
            println!("\nCtrl-C to stop");
        }
    }
    pool.close().await;
    drop(servers);
    daemon.await.context("the daemon task failed")?
}
