//! One function per CLI command; `dispatch` maps each outcome to the process exit code.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Run the parsed command line.
pub async fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Migrate(_) | Command::Run(_) => {
            eprintln!("error: this command is not wired yet");
            ExitCode::FAILURE
        }
    }
}
