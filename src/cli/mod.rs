//! The command line (SPEC §1): one small module per command. Commands resolve their flags
//! against the config file here; the work itself is done by the library modules.

pub mod check;
pub mod eval;
pub mod log;
pub mod send;
pub mod serve;
pub mod stats;
pub mod try_cmd;
pub mod upload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Settings};
use crate::rules::RuleSet;
use crate::telemetry::LogFormat;

/// kefu (客服): answers WeChat customer-service messages by rules.
#[derive(Debug, Parser)]
#[command(name = "kefu", version, about)]
pub struct Cli {
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve(DaemonConfig),
    /// Load and validate every rule and FAQ file; print each problem as path:line:column: message.
    Check(ToolConfig),
    /// Show what the bot would do with MESSAGE (or each stdin line), without sending anything.
    Try(try_cmd::TryArgs),
    /// Act as the WeChat server: sign (and encrypt) a push and POST it to the running daemon.
    Send(send::SendArgs),
    /// Run {q, expect, also} cases against the rules and FAQ and report accuracy.
    Eval(eval::EvalArgs),
    /// Conversation threads, both sides, with each send's outcome.
    Log(log::LogArgs),
    /// A user's session: `kefu session end --app APP OPENID` ends the handoff now.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Summarize the conversation log.
    Stats(stats::StatsArgs),
    /// Uploads an image as an app's temporary media and prints its media_id.
    Upload(upload::UploadArgs),
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// End a user's handoff (and menu) now, while the daemon runs: the bot answers again.
    End(log::SessionEndArgs),
}

/// The config of a command that works with a deployment (`serve`, `send`, `log`, `stats`,
/// `session end`): `./kefu.yaml` unless given.
#[derive(Debug, Clone, Args)]
pub struct DaemonConfig {
    /// The config file.
    #[arg(long, default_value = "kefu.yaml")]
    pub config: PathBuf,
}

/// The config and rules of a tool that only needs rules (`check`, `try`, `eval`).
#[derive(Debug, Clone, Args)]
pub struct ToolConfig {
    /// The config file (default: ./kefu.yaml when it exists, else built-in defaults); a given
    /// file that is missing or invalid is an error (exit 2).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This rules folder instead of the config's.
    #[arg(long)]
    pub rules: Option<PathBuf>,
}

impl Cli {
    /// The log filter when RUST_LOG is not set: the daemon logs at info, tools only warnings.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Serve(_) => "info,actix_server=warn",
            _ => "warn",
        }
    }
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(daemon) => serve::run(&daemon.config),
        Command::Check(tool) => check::run(tool.config.as_deref(), tool.rules.as_deref()),
        Command::Try(args) => try_cmd::run(&args),
        Command::Send(args) => send::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Log(args) => log::run_log(&args),
        Command::Session {
            command: SessionCommand::End(args),
        } => log::run_session_end(&args),
        Command::Stats(args) => stats::run(&args),
        Command::Upload(args) => upload::run(&args),
    }
}

/// Reads `--at "YYYY-MM-DD HH:MM"` (also `YYYY-MM-DDTHH:MM` and with seconds) in `tz` into
/// unix seconds.
pub fn parse_at(text: &str, tz: chrono_tz::Tz) -> anyhow::Result<i64> {
    use chrono::{NaiveDateTime, TimeZone};
    let text = text.trim();
    let naive = ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .ok_or_else(|| anyhow::anyhow!("`{text}` is not a time; write \"YYYY-MM-DD HH:MM\""))?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp())
        .ok_or_else(|| anyhow::anyhow!("`{text}` does not exist in {tz}"))
}

/// Loads the config, naming the file in the error.
pub fn load_settings(path: &Path) -> anyhow::Result<Settings> {
    config::load(path).with_context(|| format!("loading {}", path.display()))
}

/// What `try` and `eval` decide with: the config (or its defaults) and the rules of `--rules` or
/// of the config. `None` when the rules have errors (they are printed).
pub fn load_trial(
    config: Option<&Path>,
    rules: Option<&Path>,
) -> anyhow::Result<Option<(Settings, RuleSet)>> {
    let settings = load_settings_or_default(config)?;
    let dir = rules.map_or_else(|| settings.rules_dir.clone(), Path::to_path_buf);
    Ok(check::load_rules(&dir, &settings).map(|set| (settings, set)))
}

/// Loads the given config (missing or invalid: an error, exit 2, like `serve`); without one,
/// `./kefu.yaml` when it exists, else built-in defaults (tools that only need rules).
pub fn load_settings_or_default(path: Option<&Path>) -> anyhow::Result<Settings> {
    if let Some(path) = path {
        if !path.exists() {
            anyhow::bail!("{}: no such config file", path.display());
        }
        return load_settings(path);
    }
    let path = Path::new("kefu.yaml");
    if path.exists() {
        return load_settings(path);
    }
    let text = "apps:\n  - id: try\n    appid: wx0000000000000000\n    token: try\n";
    Ok(config::parse(text, Path::new("kefu.yaml"), &|_| None)?)
}
