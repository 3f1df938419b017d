//! `mcp-healthd demo`: a local tour in one command. It makes a database of its own, of a name
//! new to each run, on the configured PostgreSQL server if it answers, or else starts a
//! throwaway cluster (`database`, `postgres`); serves the sample registry (built into the binary
//! from `samples/registry`, or `--samples DIR`) from loopback servers with mixed behaviours
//! (`services`); runs the real daemon against them; and shows the dashboard until Ctrl-C: on a
//! terminal a live screen fitted to it (`layout`, `screen`), on a pipe a plain table every few
//! seconds. Ctrl-C (`signals`) stops the daemon (its final flush included), then removes the
//! database or stops the cluster; a second Ctrl-C skips the wait for the daemon but still
//! removes everything.
//!
//! The top layer with `commands`: may import anything below it.

/// `println!` that never panics: the demo's output may be a pipe that closed (`demo | head`)
/// or a terminal that went away, and the stop path must still remove what the demo made.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that never panics (see `say!`).
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod database;
mod layout;
mod postgres;
mod screen;
mod services;
mod signals;
mod view;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigSource, DatabaseUrl};
use crate::observe::telemetry;
use crate::registry::import;
use crate::store::db;
use database::DemoDatabase;
use layout::Banner;
use services::Behaviour;
use signals::StopSignals;
use view::View;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/samples.rs"));
}

/// How the demo was stopped: orderly (exit 0), or by a second Ctrl-C (exit 130).
enum Stop {
    Orderly,
    Forced,
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

fn demo_config(config: &Config, url: DatabaseUrl) -> Config {
    let mut c = config.clone();
    c.database.url = url;
    c.database.auto_migrate = true;
    c.database.flush_interval = Duration::from_millis(500);
    c.probe.interval = Duration::from_secs(2);
    c.probe.timeout = Duration::from_secs(1);
    // The slow samples answer in 400 ms: degraded, within the timeout.
    c.probe.degraded_after = Duration::from_millis(250);
    c.probe.failure_threshold = 2;
    c.registry.refresh_interval = Duration::from_secs(5);
    c.jobs.lease_ttl = Duration::from_secs(6);
    // In-flight checks end within the probe timeout anyway: Ctrl-C stops the tour at once.
    c.daemon.shutdown_grace = Duration::from_millis(500);
    // Never the real daemon's state directory: its saved results are not the demo's to replay,
    // and the demo's must not be replayed into production.
    c.daemon.state_dir = None;
    // Show /metrics if the configured address is free; never fail the tour over it.
    c.http.listen = c
        .http
        .listen
        .filter(|a| std::net::TcpListener::bind(a).is_ok());
    c
}

pub async fn run(
    config: Config,
    source: ConfigSource,
    samples: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    // First of all: from here on no signal can end the process before it has cleaned up.
    let mut signals = StopSignals::listen().context("cannot listen for Ctrl-C")?;
    // A new private directory of unpredictable name, and a log file that must not exist yet:
    // nothing is opened through a link another user planted. Removed on every way out.
    let work = tempfile::Builder::new()
        .prefix("mcp-healthd-demo-log-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .context("cannot create the demo's temporary directory")?;
    let log = work.path().join("daemon.log");
    telemetry::init_to_file(&config.log, &log)?;

    let database = tokio::select! {
        () = signals.next() => {
            // A cluster half started is stopped and removed as its future is dropped.
            say!("stopping…");
            return Ok(ExitCode::SUCCESS);
        }
        opened = DemoDatabase::open(&config.database.url) => opened?,
    };
    let config = demo_config(&config, database.url.clone());
    let shown = format!("{} on {}", database.name, database.location);
    let stopped = tour(
        &config,
        source,
        samples.as_deref(),
        &log,
        shown,
        &mut signals,
    )
    .await;
    let removed = database.remove().await;
    let _ = work.close();
    say!("demo stopped; everything it started is stopped and what it created is removed");
    removed?;
    Ok(match stopped? {
        Stop::Orderly => ExitCode::SUCCESS,
        Stop::Forced => ExitCode::from(130),
    })
}

/// The sample services, serving, and registered in the demo's database.
struct Fleet {
    pool: PgPool,
    servers: Vec<services::Service>,
}

impl Fleet {
    async fn start(config: &Config, samples: Option<&Path>) -> anyhow::Result<Self> {
        let mut entries = sample_entries(samples, config)?;
        let mut servers = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter_mut().enumerate() {
            let server = services::spawn(Behaviour::for_index(i)).await?;
            entry.port = i32::from(server.port);
            servers.push(server);
        }
        let (pool, _) = db::open(&config.database).await?;
        import::apply(&pool, &entries, true).await?;
        Ok(Self { pool, servers })
    }
}

async fn tour(
    config: &Config,
    source: ConfigSource,
    samples: Option<&Path>,
    log: &Path,
    database: String,
    signals: &mut StopSignals,
) -> anyhow::Result<Stop> {
    let fleet = tokio::select! {
        () = signals.next() => {
            say!("stopping…");
            return Ok(Stop::Orderly);
        }
        fleet = Fleet::start(config, samples) => fleet?,
    };
    let banner = Banner {
        services: fleet.servers.len(),
        interval: config.probe.interval,
        database,
        log: log.to_owned(),
        metrics: config.http.listen,
        degraded_after: config.probe.degraded_after,
    };
    say!(
        "{} sample services on 127.0.0.1 (healthy, failing, slow, flapping, recovering); checks every {}s{}",
        banner.services,
        banner.interval.as_secs(),
        banner
            .metrics
            .map(|a| format!("; status page at http://{a}/, metrics at /metrics"))
            .unwrap_or_default()
    );
    say!("daemon log: {}  —  Ctrl-C to stop\n", log.display());

    let shutdown = CancellationToken::new();
    let run = crate::daemon::run_until(config.clone(), source, shutdown.clone());
    let mut daemon = tokio::spawn(run);
    let mut view = View::new()?;
    let watched = view.watch(&fleet.pool, &banner, &daemon, signals).await;
    drop(view);
    say!("stopping…");
    shutdown.cancel();
    let stop = tokio::select! {
        ended = &mut daemon => {
            ended.context("the daemon task failed")??;
            Stop::Orderly
        }
        () = signals.next() => {
            daemon.abort();
            say!("stopping now, without waiting for the daemon…");
            Stop::Forced
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), fleet.pool.close()).await;
    watched?;
    Ok(stop)
}
