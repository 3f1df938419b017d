//! Shared test helpers: fresh databases on the real server, and running the real binary.

use std::fmt::Debug;
use std::process::{Command, Output};
use std::time::Duration;

use mcp_healthd::config::DatabaseUrl;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The server tests run against.
pub fn server_url() -> DatabaseUrl {
    let raw = std::env::var("DATABASE_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    DatabaseUrl::parse(&raw).expect("DATABASE_URL must be a PostgreSQL URL")
}

/// A database created for one test and dropped when the test passes (kept for inspection
/// when it fails; `.ci/run` sweeps leftovers before the next run).
pub struct TestDb {
    pub name: String,
    pub url: DatabaseUrl,
    pub pool: PgPool,
}

impl TestDb {
    /// An empty database.
    pub async fn empty() -> Self {
        mcp_healthd::install_crypto_provider();
        let name = Self::unused_name();
        let admin = admin_pool().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let url = server_url().with_database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect(url.expose())
            .await
            .expect("connect to test database");
        Self { name, url, pool }
    }

    /// Takes charge of a database that something else (the binary under test) created.
    pub async fn adopt(name: &str) -> Self {
        mcp_healthd::install_crypto_provider();
        let url = server_url().with_database(name);
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect(url.expose())
            .await
            .expect("connect to adopted database");
        Self {
            name: name.to_owned(),
            url,
            pool,
        }
    }

    /// A fresh database name, not yet created.
    pub fn unused_name() -> String {
        format!("healthd_it_{}", uuid::Uuid::new_v4().simple())
    }

    /// A database with every migration applied.
    pub async fn migrated() -> Self {
        let db = Self::empty().await;
        mcp_healthd::store::db::MIGRATOR
            .run(&db.pool)
            .await
            .expect("migrations apply");
        db
    }
}

async fn admin_pool() -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(server_url().expose())
        .await
        .expect("PostgreSQL must be reachable at DATABASE_URL")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping database {} of the failed test", self.name);
            return;
        }
        let name = self.name.clone();
        // Drop runs inside the test's runtime; the DROP needs its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let admin = admin_pool().await;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await;
            });
        })
        .join();
    }
}

/// Runs the real binary with `args`, without the caller's `DATABASE_URL` or
/// `MCP_HEALTHD_CONFIG` unless `env` sets them.
pub fn healthd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-healthd"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("MCP_HEALTHD_CONFIG")
        .env_remove("RUST_LOG")
        .current_dir(std::env::temp_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run mcp-healthd")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `probe` about every 100 ms until it returns `Ok`, and returns that value. If `limit`
/// passes first, panics naming `what` and the last value the probe saw (its `Err`). The limit
/// only bounds a failure, so make it generous: a busy machine must not fail a correct daemon.
pub async fn eventually<T, E: Debug>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}; last seen: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
