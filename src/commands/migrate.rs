//! `mcp-healthd migrate`: create the database if missing, apply pending migrations, say what ran.

use std::process::ExitCode;

use crate::config::Config;
use crate::store::db;

pub async fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let url = &config.database.url;
    let (pool, created) = db::connect_creating(&config.database).await?;
    if created {
        println!(
            "created database {}",
            url.database_name().unwrap_or_default()
        );
    }
    let applied = db::migrate(&pool, url, true).await?;
    if applied.is_empty() {
        println!(
            "{url}: schema is up to date ({} migrations)",
            db::MIGRATOR.iter().count()
        );
    } else {
        println!("{url}: applied {} migration(s):", applied.len());
        for m in &applied {
            println!("  {:04} {}", m.version, m.description);
        }
    }
    pool.close().await;
    Ok(ExitCode::SUCCESS)
}
