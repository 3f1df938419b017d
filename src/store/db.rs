//! The database connection: building the pool, creating the database when it is missing,
//! and the embedded migrations (the single source of truth for the schema).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres};

use super::connect_error::{ConnectFailure, explain};
use crate::config::{DatabaseConfig, DatabaseUrl};

/// Every file of `migrations/`, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// One sentence: where, what went wrong, and where the URL came from.
    #[error("{sentence}; the URL is from {origin}")]
    Connect {
        failure: ConnectFailure,
        sentence: String,
        origin: String,
    },
    #[error("cannot create database {name} on {url}: {cause}")]
    Create {
        name: String,
        url: String,
        refused: bool,
        cause: String,
    },
    #[error("migrating {url} failed: {cause}")]
    Migrate {
        url: String,
        cause: sqlx::migrate::MigrateError,
    },
    #[error(
        "{} migrations pending: run `mcp-healthd migrate` (as the schema owner); the schema of {url} lacks {pending:?}",
        .pending.len()
    )]
    Behind { url: String, pending: Vec<i64> },
    #[error(
        "{url} has migrations this binary does not know ({unknown:?}); run the newer mcp-healthd or upgrade this one"
    )]
    Ahead { url: String, unknown: Vec<i64> },
    #[error(
        "{url} holds the original design's tables: run `mcp-healthd migrate` to convert them (the daemon does not: converting locks the platform's tables for the whole copy)"
    )]
    Unadopted { url: String },
    #[error(transparent)]
    Query(#[from] sqlx::Error),
}

impl DbError {
    /// Errors that retrying cannot fix: the schema, not the server, is the problem.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            DbError::Migrate { .. }
                | DbError::Unadopted { .. }
                | DbError::Behind { .. }
                | DbError::Ahead { .. }
                | DbError::Create { refused: true, .. }
        )
    }

    /// A connection the server refused for a reason only the configuration can fix.
    pub fn is_rejected_credentials(&self) -> bool {
        matches!(
            self,
            DbError::Connect {
                failure: ConnectFailure::Auth,
                ..
            }
        )
    }

    /// The database named in the URL does not exist.
    pub fn is_missing_database(&self) -> bool {
        matches!(
            self,
            DbError::Connect {
                failure: ConnectFailure::Missing,
                ..
            }
        )
    }

    fn connect(config: &DatabaseConfig, e: &sqlx::Error) -> Self {
        let (failure, sentence) = explain(config, e);
        DbError::Connect {
            failure,
            sentence,
            origin: config.url_origin.clone(),
        }
    }
}

/// A migration that `migrate` applied in this run.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: i64,
    pub description: String,
}

/// The server-side deadlines of every session: no statement runs longer than
/// `statement_timeout`, and no transaction idles longer, so a stalled daemon never holds locks.
fn connect_options(config: &DatabaseConfig) -> Result<PgConnectOptions, DbError> {
    let ms = config.statement_timeout.as_millis().max(1).to_string();
    config
        .url
        .expose()
        .parse::<PgConnectOptions>()
        .map(|o| {
            o.application_name("mcp-healthd").options([
                ("statement_timeout", ms.as_str()),
                ("idle_in_transaction_session_timeout", ms.as_str()),
            ])
        })
        .map_err(|e| DbError::connect(config, &e))
}

/// The client-side deadline of one database call: a server that has gone silent (stopped, or a
/// network that drops packets) does not answer even its own `statement_timeout`. A call that
/// takes longer than `limit` fails with a timed-out I/O error, like any lost connection.
pub async fn deadline<T>(
    limit: Duration,
    call: impl std::future::Future<Output = sqlx::Result<T>>,
) -> sqlx::Result<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer from the database within {}",
                humantime::format_duration(limit)
            ),
        ))),
    }
}

/// The client-side limit for one call: the server's own deadline. A statement that is merely
/// slow is cancelled by the server at about the same moment; a silent server is noticed within
/// it (so `db_unavailable` comes within `statement_timeout` of the first flush that goes
/// unanswered).
pub fn call_limit(config: &DatabaseConfig) -> Duration {
    config.statement_timeout
}

/// Opens a pool; fails after `connect_timeout` if the server does not answer. One connection
/// is made alone first: a pool retries a refused connection until its timeout and then reports
/// only that it timed out, where one attempt says why (refused, password, no such database).
pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    let options = connect_options(config)?;
    let first = deadline(
        config.connect_timeout,
        sqlx::PgConnection::connect_with(&options),
    )
    .await
    .map_err(|e| DbError::connect(config, &e))?;
    let _ = first.close().await;
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.connect_timeout)
        // A dead connection surfaces as an error on use, which every caller handles; a ping
        // before each use would double the round trips of the status path.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|e| DbError::connect(config, &e))
}

/// Connects, creating the database first when the server says it does not exist (through the
/// maintenance database). Returns the pool and whether it created the database. A server that
/// cannot be reached, or refuses us, fails as any connection does.
pub async fn connect_creating(config: &DatabaseConfig) -> Result<(PgPool, bool), DbError> {
    match connect(config).await {
        Err(e) if e.is_missing_database() => {
            let created = create_database(config).await?;
            Ok((connect(config).await?, created))
        }
        other => other.map(|pool| (pool, false)),
    }
}

/// CREATE DATABASE for the URL's database; `false` if another daemon created it meanwhile.
async fn create_database(config: &DatabaseConfig) -> Result<bool, DbError> {
    let url = &config.url;
    let create = Postgres::create_database(url.expose());
    match deadline(config.connect_timeout, create).await {
        Ok(()) => Ok(true),
        // Another daemon created it between our connection attempt and our CREATE.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(false),
        Err(e) => Err(DbError::Create {
            name: url.database_name().unwrap_or_default(),
            url: url.to_string(),
            // The server answered (no privilege, no maintenance database): retrying cannot help.
            refused: e.as_database_error().is_some(),
            cause: match e.as_database_error() {
                Some(d) => crate::text::echo(d.message()),
                None => crate::text::echo(&e.to_string()),
            },
        }),
    }
}

/// Applies pending migrations (under the migrator's advisory lock, so several daemons starting
/// together are safe) and returns the ones this call applied, oldest first. Migrations run
/// without the session's statement deadline: converting a large table may take minutes.
/// Converting the original design's tables (`adopt`) is for an operator's explicit `migrate`
/// only: it locks the platform's tables for the whole copy, which a daemon's restart must not.
pub async fn migrate(
    pool: &PgPool,
    url: &DatabaseUrl,
    adopt: bool,
) -> Result<Vec<Applied>, DbError> {
    let before: HashSet<i64> = applied_versions(pool).await?;
    // One connection of its own, whose options (later ones win) lift the deadline.
    let unlimited = (*pool.connect_options())
        .clone()
        .options([("statement_timeout", "0")]);
    let migrating = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(unlimited)
        .await?;
    // A database holding the original design's tables (its migration 008) is converted in
    // place first, in one transaction with every migration: see `store::adopt`.
    if !adopt
        && super::adopt::pending(&migrating, &MIGRATOR)
            .await
            .unwrap_or(false)
    {
        migrating.close().await;
        return Err(DbError::Unadopted {
            url: url.to_string(),
        });
    }
    let ran = match super::adopt::original_design(&migrating, &MIGRATOR).await {
        Ok(_) => MIGRATOR.run(&migrating).await,
        Err(e) => Err(e),
    };
    migrating.close().await;
    ran.map_err(|cause| DbError::Migrate {
        url: url.to_string(),
        cause,
    })?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !before.contains(&m.version))
        .map(|m| Applied {
            version: m.version,
            description: m.description.to_string(),
        })
        .collect())
}

async fn applied_versions(pool: &PgPool) -> Result<HashSet<i64>, DbError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(HashSet::new());
    }
    let rows: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Checks, without writing anything, that the database has exactly the migrations this binary
/// embeds: what a least-privilege role (which cannot migrate) does at start-up.
pub async fn check_current(pool: &PgPool, url: &DatabaseUrl) -> Result<(), DbError> {
    let applied = applied_versions(pool).await?;
    let known: HashSet<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    let mut pending: Vec<i64> = known.difference(&applied).copied().collect();
    let mut unknown: Vec<i64> = applied.difference(&known).copied().collect();
    pending.sort_unstable();
    unknown.sort_unstable();
    if !unknown.is_empty() {
        return Err(DbError::Ahead {
            url: url.to_string(),
            unknown,
        });
    }
    if !pending.is_empty() {
        return Err(DbError::Behind {
            url: url.to_string(),
            pending,
        });
    }
    Ok(())
}

/// Connects; with `auto_migrate`, creates the database if missing and applies pending
/// migrations, otherwise only checks that none is pending. Only `run` (with retries around it)
/// and the demo use this: every other command opens with [`open_current`].
pub async fn open(config: &DatabaseConfig) -> Result<(PgPool, Vec<Applied>), DbError> {
    let pool = match config.auto_migrate {
        true => connect_creating(config).await?.0,
        false => connect(config).await?,
    };
    if config.auto_migrate {
        let applied = migrate(&pool, &config.url, false).await?;
        Ok((pool, applied))
    } else {
        check_current(&pool, &config.url).await?;
        Ok((pool, Vec::new()))
    }
}

/// Connects for a command that must not change the schema (every command but `run` and
/// `migrate`, whatever `auto_migrate` says): never creates the database and never migrates;
/// fails, saying so, when the database does not exist or migrations are pending.
pub async fn open_current(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    let pool = connect(config).await?;
    if let Err(e) = check_current(&pool, &config.url).await {
        pool.close().await;
        return Err(e);
    }
    Ok(pool)
}

/// Exponential backoff with a ceiling, for reconnecting: 0.5 s, 1 s, 2 s, ... up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    started: Instant,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self {
            next: Duration::from_millis(500),
            max,
            started: Instant::now(),
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let mut b = Backoff::new(Duration::from_secs(3));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 3000, 3000]);
    }
}
