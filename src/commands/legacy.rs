//! `mcp-healthd legacy migrate|report|finalize`: the operator's side of `crate::store::legacy`.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::store::db;
use crate::store::legacy;

async fn pool(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    let pool = db::open_current(&config.database).await?;
    Ok(pool)
}

pub async fn migrate(config: &Config) -> anyhow::Result<ExitCode> {
    let pool = pool(config).await?;
    let counts = legacy::migrate_instances(&pool)
        .await
        .context("legacy migration failed; nothing was changed")?;
    println!("{:<10} {:<22} {:>10}", "OUTCOME", "REASON", "ROWS");
    for c in &counts {
        println!(
            "{:<10} {:<22} {:>10}",
            c.outcome,
            c.reason.as_deref().unwrap_or("-"),
            c.rows
        );
    }
    print_report(&legacy::report(&pool).await?);
    Ok(ExitCode::SUCCESS)
}

pub async fn report(config: &Config) -> anyhow::Result<ExitCode> {
    let pool = pool(config).await?;
    let report = legacy::report(&pool).await?;
    print_report(&report);
    Ok(if report.unaccounted == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(r: &legacy::Report) {
    println!(
        "legacy instances: {} total = {} migrated + {} rejected + {} unaccounted",
        r.total, r.migrated, r.rejected, r.unaccounted
    );
}

pub async fn finalize(config: &Config, yes: bool) -> anyhow::Result<ExitCode> {
    if !yes {
        anyhow::bail!(
            "`legacy finalize` archives and then drops mcp_instances and mcp_types; check `legacy report` first and pass --yes to confirm"
        );
    }
    let pool = pool(config).await?;
    let (instances, types) = legacy::finalize(&pool)
        .await
        .context("legacy finalize refused; nothing was dropped")?;
    println!(
        "archived {instances} instances into legacy_mcp_instances_archive and {types} types into legacy_mcp_types_archive; dropped mcp_instances and mcp_types"
    );
    Ok(ExitCode::SUCCESS)
}
