//! The `gatekeeper` binary: parse the command line and run it
//! (`src/commands`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

mod commands;

/// mimalloc instead of glibc's malloc: a decision makes a few dozen small,
/// short-lived allocations (HTTP buffers, headers, Redis frames), and
/// glibc's malloc and free were about a tenth of gatekeeper's CPU per
/// decision (bench/README.md, run 5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    commands::run(commands::Cli::parse())
}
