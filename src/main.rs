//! The `mcp-healthd` binary: parse the command line, run the command, print the error chain and
//! choose the exit code (0 ok, 1 failure, 2 usage (clap), 78 bad configuration or credentials
//! the database rejects).

use std::process::ExitCode;

use clap::Parser;
use mcp_healthd::commands::{self, cli::Cli};
use mcp_healthd::store::db::DbError;
use mcp_healthd::{EXIT_CONFIG, config::ConfigError};

fn main() -> ExitCode {
    mcp_healthd::install_crypto_provider();
    let cli = Cli::parse();
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mcp-healthd: {err:#}");
            // A bad file, or credentials the server rejects: the configuration must change.
            let misconfigured = err.chain().any(|e| {
                e.is::<ConfigError>()
                    || e.downcast_ref::<DbError>()
                        .is_some_and(DbError::is_rejected_credentials)
            });
            if misconfigured {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
