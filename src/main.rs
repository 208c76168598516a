//! Entry point: parse the command line and hand over to the library.

use clap::Parser;

// See Cargo.toml: the allocator is chosen for the many small, short-lived JSON values.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// A multi-threaded runtime: the fan-out workers and their HTTP clients run here, while the
// SCIM API's workers run on threads of their own. On actix's single-threaded one every
// delivery of every target shared one thread.
fn main() -> std::process::ExitCode {
    let cli = scim_bridge::cli::Cli::parse();
    // Blocking work here is ledger reads (at most `database.readers` at once), the planner's
    // rendering and checkpoints. Tokio's default of 512 threads let a busy fan-out grow dozens
    // of them, each a context switch away from the work and with an allocator heap of its own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(scim_bridge::cli::run(cli)),
        Err(err) => Err(err.into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("scim-bridge: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
