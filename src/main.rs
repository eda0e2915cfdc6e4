//! The `m1` command-line client: `m1 <env> <endpoint> -param value ...`, `m1 ops <endpoint> ...`,
//! `m1 quickstart`.

mod cli;
mod remote;

// Parsing and typing allocate many small maps and strings; mimalloc handles that load across
// threads far better than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

fn main() {
    let args = cli::Args::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("m1: {e:#}");
        std::process::exit(1);
    }
}
