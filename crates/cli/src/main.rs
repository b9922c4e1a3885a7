//! The `ferry` binary: argument parsing, prompts, progress and exit codes. Each subcommand in
//! `cmd/` is glue over one library function.

mod alloc_tuning;
mod cli;
mod cmd;
mod common;
mod from_disk;
mod pacing;

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

/// A closed pipe (`ferry vault jobs | head -1`) ends the command quietly, as Unix tools do:
/// `println!` (and the completion writer) panics when stdout's reader is gone, and this ends the
/// process instead of printing the panic, with the status a process killed by SIGPIPE has (141). (Resetting SIGPIPE itself
/// would take `unsafe` and would also kill the vault on a socket closed under it.)
fn end_quietly_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if message.is_some_and(|m| m.contains("Broken pipe")) {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    alloc_tuning::tune();
    end_quietly_on_a_closed_pipe();
    let cli = cli::Cli::parse();
    // fuser warns of what is harmless here (an unmount done by `fusermount -u` before its own).
    let level = match cli.global.verbose {
        0 => "warn,fuser=error",
        1 => "info,fuser=warn",
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
