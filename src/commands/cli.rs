//! The command line as clap sees it (DESIGN.md "Command line"): a plain description of the
//! flags. `commands` turns it into work.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args, Parser, Subcommand};

use super::maintenance::{parse_duration, parse_time};
use crate::store::report::{Period, parse_month};

#[derive(Debug, Parser)]
#[command(
    name = "mcp-healthd",
    version,
    about = "Health checks for a fleet of MCP services, and the caretaker of their PostgreSQL database"
)]
pub struct Cli {
    /// Configuration file [default: ./config.toml, then /etc/mcp-healthd/config.toml]
    #[arg(
        short,
        long,
        env = "MCP_HEALTHD_CONFIG",
        global = true,
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: probe services, keep their status current, run maintenance jobs
    Run,
    /// Apply pending schema migrations (creating the database if missing) and print what ran
    Migrate,
    /// Probe services once and print the result; exit 1 if any is unhealthy
    Check {
        /// Only this service_type
        #[arg(long, value_name = "SERVICE_TYPE")]
        service: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Also write the results to the database
        #[arg(long)]
        record: bool,
    },
    /// Print the service_health_dashboard view
    Status {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Maintenance jobs
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// The service registry
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Maintenance windows: checks go on, but raise no service alert and stay out of uptime
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),
    /// Per service over a period: checks, failures, uptime, downtime, incidents, longest
    /// incident, mean time to recovery
    Report(ReportArgs),
    /// The configuration file
    #[command(subcommand)]
    Config(ConfigCommand),
    /// One-command local tour: sample services, the real daemon, a live status table
    Demo {
        /// Sample registry directory [default: the samples built into the binary]
        #[arg(long, value_name = "DIR")]
        samples: Option<PathBuf>,
    },
    /// Move data off the legacy mcp_instances/mcp_types tables (spec migrations 010 and 011)
    #[command(subcommand)]
    Legacy(LegacyCommand),
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Schedules, next and last runs
    List,
    /// Run one job now, exactly as the scheduler would
    Run {
        /// The job: partition_maintenance, analytics_retention, validation_cache_cleanup or
        /// housekeeping
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Upsert service_registry from DIR/*/config.json
    Import {
        dir: PathBuf,
        /// Mark services missing from DIR unavailable (never deletes)
        #[arg(long)]
        prune: bool,
        /// Print what would change and write nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceCommand {
    /// Add a window (every service unless --service) and print its id
    Add(MaintenanceAdd),
    /// The windows now and ahead: active or planned
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// End a window now (a planned one is cancelled)
    End {
        /// The window's id, as `add` printed it and `list` shows it
        id: i64,
    },
}

/// `maintenance add`: exactly one of `--for` and `--until`.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("end").required(true).args(["duration", "until"])),
    after_help = "TIME is RFC 3339 (2026-12-03T10:00:00Z, 2026-12-03T11:00:00+01:00) or \
                  YYYY-MM-DD HH:MM[:SS] in UTC."
)]
pub struct MaintenanceAdd {
    /// Only this service_type [default: every service]
    #[arg(long, value_name = "SERVICE_TYPE")]
    pub service: Option<String>,
    /// How long the window lasts from its start (humantime: 30m, 1h, 2h30m)
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<chrono::Duration>,
    /// When the window ends (TIME)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// When the window starts (TIME) [default: now]
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub starts: Option<DateTime<Utc>>,
    /// Why (1 to 500 characters); shown by `maintenance list`
    #[arg(long)]
    pub reason: String,
}

/// `report`: at most one of `--month` and `--since`, at most one of `--json` and `--csv`.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("period").args(["month", "since"])),
    group(ArgGroup::new("format").args(["json", "csv"])),
    after_help = "Periods are UTC and exclude their end. Downtime is the incidents' time inside \
                  the period (an open incident lasts until now); MTTR is the mean full \
                  duration of the incidents that ended inside the period."
)]
pub struct ReportArgs {
    /// Only this service_type [default: every available service]
    #[arg(long, value_name = "SERVICE_TYPE")]
    pub service: Option<String>,
    /// A calendar month in UTC (2026-03: from March 1 00:00 to April 1 00:00)
    #[arg(long, value_name = "YYYY-MM", value_parser = parse_month)]
    pub month: Option<Period>,
    /// The last DURATION up to now (humantime: 24h, 7d, 30d) [default: 30d]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<chrono::Duration>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Print CSV (a header line, then one line per service) instead of a table
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective values (secrets redacted)
    Check,
}

#[derive(Debug, Subcommand)]
pub enum LegacyCommand {
    /// Copy mcp_instances into user_service_instances; every row not copied is recorded with its reason
    Migrate,
    /// Count source rows: migrated, rejected (by reason) and unaccounted
    Report,
    /// Archive the legacy tables (no plaintext tokens) and drop them; refuses unless every row is accounted for
    Finalize {
        /// Confirm: this drops mcp_instances and mcp_types
        #[arg(long)]
        yes: bool,
    },
}
