//! `mcp-healthd registry import DIR [--prune] [--dry-run]`: validates every
//! `DIR/*/config.json`, then upserts them in one transaction and reports what changed (with
//! `--dry-run`, what would change: the transaction is rolled back).

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::registry::import;
use crate::store::db;

pub async fn import(
    config: &Config,
    dir: &Path,
    prune: bool,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    // Validate the files before touching the database: a bad directory needs no connection.
    let entries = import::read_dir(dir, &config.probe)?;
    let pool = db::open_current(&config.database).await?;
    let summary = match dry_run {
        true => import::preview(&pool, &entries, prune).await?,
        false => import::apply(&pool, &entries, prune).await?,
    };
    pool.close().await;
    if dry_run {
        print!("dry run, nothing written: ");
    }
    let show = |label: &str, names: &[String]| {
        if !names.is_empty() {
            println!("  {label}: {}", names.join(", "));
        }
    };
    println!(
        "{} {} services from {}: {} added, {} changed, {} unchanged{}",
        if dry_run { "would import" } else { "imported" },
        entries.len(),
        dir.display(),
        summary.added.len(),
        summary.changed.len(),
        summary.unchanged.len(),
        if prune {
            format!(", {} made unavailable", summary.pruned.len())
        } else {
            String::new()
        }
    );
    show("added", &summary.added);
    show("changed", &summary.changed);
    show("made unavailable", &summary.pruned);
    Ok(ExitCode::SUCCESS)
}
