//! Entry point: parse the command line and hand over to the library.

use clap::Parser;

// A multi-threaded runtime: the fan-out workers and their HTTP clients run here, while the
// SCIM API's workers run on threads of their own. On actix's single-threaded one every
// delivery of every target shared one thread.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = scim_bridge::cli::Cli::parse();
    match scim_bridge::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("scim-bridge: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
