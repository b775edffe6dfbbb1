//! The `gatekeeper` binary: parse the command line and dispatch.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
mod commands;

use commands::manage;
use commands::{self as cli, Cli, Command, ImportCommand, KeyCommand, SecretCommand};

/// mimalloc instead of glibc's malloc: a decision makes a few dozen small,
/// short-lived allocations (HTTP buffers, headers, Redis frames), and
/// glibc's malloc and free were about a tenth of gatekeeper's CPU per
/// decision (bench/README.md, run 5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file, json } => cli::check::run(&file, json),
        Command::Key(KeyCommand::Generate { json }) => cli::key::generate(json),
        Command::Key(KeyCommand::Manage(cmd)) => run_async(manage::key(cmd)),
        Command::Route(cmd) => run_async(manage::route(cmd)),
        Command::Client(cmd) => run_async(manage::client(cmd)),
        Command::Grant(cmd) => run_async(manage::grant(cmd)),
        Command::Limit(cmd) => run_async(manage::limit(cmd)),
        Command::Secret(SecretCommand::Hash { cost }) => cli::secret::hash(cost),
        Command::Sign(args) => cli::sign::run(&args),
        Command::Healthcheck => run_async(cli::healthcheck::run()),
        Command::Migrate => run_async(cli::migrate::run()),
        Command::Import(ImportCommand::ApiGatekeeper { from, apply, json }) => {
            run_async(commands::import::run(&from, apply, json))
        }
        Command::Apply {
            file,
            dry_run,
            prune,
            json,
        } => run_async(commands::apply::run(&file, dry_run, prune, json)),
        Command::Audit(cmd) => run_async(commands::audit::run(cmd)),
        Command::Serve { config } => run_async(cli::serve::run(config)),
    }
}

fn run_async(fut: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => cli::fail(1, format!("cannot start the runtime: {e}")),
    }
}
