//! Turns a parsed command line into work: loads the configuration, starts the runtime, and
//! hands each command to its module. Every command returns the process exit code. `cli` is
//! the command line as clap sees it.
//!
//! Only `run` and `migrate` create the database or change the schema; every other command
//! opens it with `db::open_current`, which refuses a missing database or pending migrations.
//!
//! The top layer with `demo`: may import anything below it.

mod check;
pub mod cli;
mod jobs;
mod legacy;
mod maintenance;
mod migrate;
mod registry;
mod report;
mod status;

use std::process::ExitCode;

use anyhow::Context;

use crate::commands::cli::{
    Cli, Command, ConfigCommand, JobsCommand, LegacyCommand, MaintenanceCommand, RegistryCommand,
};
use crate::config::{Config, ConfigSource};
use crate::daemon;

/// `MCP_HEALTHD_WORKER_THREADS`: the daemon's runtime threads (default 1).
pub const WORKER_THREADS_ENV: &str = "MCP_HEALTHD_WORKER_THREADS";

/// The daemon's runtime. One thread by default: the work is I/O-bound, and one thread avoids
/// the cross-thread wake-ups a work-stealing pool pays on every check; `MCP_HEALTHD_WORKER_THREADS`
/// = N > 1 gives a pool of N, for a fleet whose checks need more than one core (the knee is
/// measured by benches/scale.rs, `BENCH_THREADS`).
fn daemon_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let threads = match std::env::var(WORKER_THREADS_ENV) {
        Err(_) => 1,
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                std::io::Error::other(format!(
                    "{WORKER_THREADS_ENV} must be a whole number of threads (1 or more), not {:?}",
                    crate::text::echo(&v)
                ))
            })?,
    };
    match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let source = ConfigSource::from_env(cli.config);
    let config = source.load()?;
    if let Command::Config(ConfigCommand::Check) = cli.command {
        return config_check(&config);
    }
    // The demo logs to a file: its terminal shows the status table.
    let log = match cli.command {
        Command::Demo { .. } => None,
        _ => crate::observe::telemetry::init(&config.log),
    };
    let runtime = match cli.command {
        Command::Run => daemon_runtime(),
        _ => tokio::runtime::Runtime::new(),
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run => daemon::run(config, source, log).await,
            Command::Migrate => migrate::run(&config).await,
            Command::Legacy(LegacyCommand::Migrate) => legacy::migrate(&config).await,
            Command::Legacy(LegacyCommand::Report) => legacy::report(&config).await,
            Command::Legacy(LegacyCommand::Finalize { yes }) => {
                legacy::finalize(&config, yes).await
            }
            Command::Check {
                service,
                json,
                record,
            } => check::run(&config, service.as_deref(), json, record).await,
            Command::Status { json } => status::run(&config, json).await,
            Command::Jobs(JobsCommand::List) => jobs::list(&config).await,
            Command::Jobs(JobsCommand::Run { name }) => jobs::run(&config, &name).await,
            Command::Registry(RegistryCommand::Import {
                dir,
                prune,
                dry_run,
            }) => registry::import(&config, &dir, prune, dry_run).await,
            Command::Maintenance(MaintenanceCommand::Add(add)) => {
                maintenance::add(&config, add).await
            }
            Command::Maintenance(MaintenanceCommand::List { json }) => {
                maintenance::list(&config, json).await
            }
            Command::Maintenance(MaintenanceCommand::End { id }) => {
                maintenance::end(&config, id).await
            }
            Command::Report(args) => report::run(&config, args).await,
            Command::Demo { samples } => crate::demo::run(config, source, samples).await,
            Command::Config(ConfigCommand::Check) => unreachable!("handled above"),
        }
    })
}

fn config_check(config: &Config) -> anyhow::Result<ExitCode> {
    let origin = config.source.as_ref().map_or_else(
        || "built-in defaults (no file found)".to_owned(),
        |p| p.display().to_string(),
    );
    println!("# configuration OK: {origin}");
    println!("# effective values (password redacted):");
    print!("{}", config.to_effective_toml());
    schema_check(config)
}

/// The schema, as far as a read-only look can tell: pending (or unknown) migrations fail the
/// check, as they would fail every read-only command; a server that does not answer, or a
/// database not created yet, is only noted (the file itself is fine, and `migrate` creates it).
fn schema_check(config: &Config) -> anyhow::Result<ExitCode> {
    use crate::store::db::{self, DbError};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let opened = runtime.block_on(async {
        let opened = db::open_current(&config.database).await;
        if let Ok(pool) = &opened {
            pool.close().await;
        }
        opened.map(drop)
    });
    match opened {
        Ok(()) => println!("# database schema: current"),
        Err(e @ (DbError::Behind { .. } | DbError::Ahead { .. })) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => println!(
            "# database schema not checked: {}",
            crate::text::echo(&e.to_string())
        ),
    }
    Ok(ExitCode::SUCCESS)
}
