//! The `mcp-healthd` binary: parse the command line, run the command, print the error chain and
//! choose the exit code (0 ok, 1 failure, 78 bad configuration).

use std::process::ExitCode;

use clap::Parser;
use mcp_healthd::commands::{self, cli::Cli};
use mcp_healthd::{EXIT_CONFIG, config::ConfigError};

fn main() -> ExitCode {
    mcp_healthd::install_crypto_provider();
    let cli = Cli::parse();
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mcp-healthd: {err:#}");
            if err.chain().any(|e| e.is::<ConfigError>()) {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
