//! The `ferry` binary: argument parsing, prompts, progress and exit codes. Each subcommand in
//! `cmd/` is glue over one library function.

mod alloc_tuning;
mod cli;
mod cmd;
mod common;

use std::process::ExitCode;

use clap::Parser;

/// What a command achieved, for the exit code.
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 3: a recovery point was written (or a restore done) but some files failed.
    Partial,
    /// Exit 1 with no further message (the command already reported what is wrong).
    Failed,
}

fn main() -> ExitCode {
    alloc_tuning::tune();
    let cli = cli::Cli::parse();
    let level = match cli.global.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    ferry_store::init_tls();
    common::repair_private_dirs(&cli.global);
    match cmd::run(&cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Partial) => ExitCode::from(3),
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
