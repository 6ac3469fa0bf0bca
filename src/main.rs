//! The `kefu` binary: parse the command line, start telemetry, run the command, map the result
//! to an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kefu::cli::Cli::parse();
    let log_guard = kefu::telemetry::init(cli.log_format, cli.default_log_filter());
    let result = kefu::cli::run(cli);
    drop(log_guard);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kefu: {e:#}");
            ExitCode::from(2)
        }
    }
}
