//! The `m1` command: `m1 <env> <endpoint> -param value ...`, `m1 ops <endpoint> ...`,
//! `m1 serve`, `m1 quickstart`. Everything it does is the library's endpoint layer
//! (`m1::endpoint`), called locally or on a remote `m1 serve`.

mod cli;
mod quickstart;
mod remote;

// Parsing and typing allocate many small maps and strings; mimalloc handles that load across
// threads far better than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(e) = cli::run(std::env::args().skip(1).collect()) {
        eprintln!("m1: {}", message(&e));
        std::process::exit(1);
    }
}

/// The error and its causes, each cause once: errors that wrap another often repeat its text.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
