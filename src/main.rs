//! Entry point: parse the command line and hand over to the library.

use clap::Parser;

#[actix_web::main]
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
