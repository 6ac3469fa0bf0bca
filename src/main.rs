//! The `kefu` binary: parse the command line, start telemetry, run the command, map the result
//! to an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kefu::cli::Cli::parse();
    kefu::telemetry::init(cli.log_format, cli.default_log_filter());
    match kefu::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kefu: {e:#}");
            ExitCode::from(2)
        }
    }
}
