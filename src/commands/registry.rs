//! `mcp-healthd registry import DIR [--prune]`: validates every `DIR/*/config.json`, then
//! upserts them in one transaction and reports what changed.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::registry::import;
use crate::store::db;

pub async fn import(config: &Config, dir: &Path, prune: bool) -> anyhow::Result<ExitCode> {
    // Validate the files before touching the database: a bad directory needs no connection.
    let entries = import::read_dir(dir, &config.probe)?;
    let pool = db::open_current(&config.database).await?;
    let summary = import::apply(&pool, &entries, prune).await?;
    pool.close().await;
    let show = |label: &str, names: &[String]| {
        if !names.is_empty() {
            println!("  {label}: {}", names.join(", "));
        }
    };
    println!(
        "imported {} services from {}: {} added, {} changed, {} unchanged{}",
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
