//! `mcp-healthd status [--json]`: the `service_health_dashboard` view in the terminal, grouped
//! by category (coloured on a terminal, plain otherwise), or as JSON for scripts. Exit 0 when
//! every available service is up, 1 otherwise.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::config::Config;
use crate::store::dashboard;
use crate::store::db;

pub async fn run(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let pool = db::open_current(&config.database).await?;
    let rows = dashboard::load(&pool).await?;
    pool.close().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        print!("{}", dashboard::render(&rows, chrono::Utc::now(), color));
        if let Some(hint) = dashboard::no_daemon_hint(&rows) {
            println!("{hint}");
        }
    }
    Ok(if dashboard::all_up(&rows) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
