//! The command line (SPEC §1): one small module per command. Commands resolve their flags
//! against the config file here; the work itself is done by the library modules.

pub mod check;
pub mod eval;
pub mod log;
pub mod send;
pub mod serve;
pub mod stats;
pub mod try_cmd;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

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
    Serve {
        #[arg(long, default_value = "kefu.yaml")]
        config: PathBuf,
    },
    /// Load and validate every rule and FAQ file; print each problem as path:line:column: message.
    Check {
        /// The config file (default: ./kefu.yaml when it exists, else built-in defaults); a
        /// given file that is missing or invalid is an error (exit 2).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Check this rules folder instead of the config's.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Show what the bot would do with MESSAGE (or each stdin line), without sending anything.
    Try {
        /// The config file (default: ./kefu.yaml when it exists, else built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        rules: Option<PathBuf>,
        /// One JSON object per message.
        #[arg(long)]
        json: bool,
        /// The user's openid (sessions are per user).
        #[arg(long, default_value = "o_kefu_try_user")]
        user: String,
        /// Try at this time, "YYYY-MM-DD HH:MM" in the config's time zone (schedules, calendars).
        #[arg(long)]
        at: Option<String>,
        /// Try this event instead of a text (e.g. user_enter_tempsession, kf_close_session).
        #[arg(long, conflicts_with = "msg_type")]
        event: Option<String>,
        /// The event's EventKey (with --event).
        #[arg(long, requires = "event")]
        event_key: Option<String>,
        /// Try a message of this type instead of a text (image, miniprogrampage, voice, …).
        #[arg(long)]
        msg_type: Option<String>,
        message: Option<String>,
    },
    /// Act as the WeChat server: sign (and encrypt) a push and POST it to the running daemon.
    Send {
        #[arg(long, default_value = "kefu.yaml")]
        config: PathBuf,
        /// The app to send as (default: the first configured app).
        #[arg(long)]
        app: Option<String>,
        /// The daemon's push URL (default: from the config's listen address).
        #[arg(long)]
        url: Option<String>,
        /// The user's openid.
        #[arg(long, default_value = "o_kefu_send_user")]
        user: String,
        /// Send this event instead of a text message (e.g. user_enter_tempsession).
        #[arg(long)]
        event: Option<String>,
        message: Option<String>,
    },
    /// Run {q, expect, also} cases against the rules and FAQ and report accuracy.
    Eval {
        /// The config file (default: ./kefu.yaml when it exists, else built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Run the cases at this time, "YYYY-MM-DD HH:MM" in the config's time zone (a case's
        /// own `at:` wins).
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Exit 1 when accuracy (0..1 or percent) is below this.
        #[arg(long)]
        min_accuracy: Option<f64>,
        /// Exit 1 when more off-topic cases than this got an FAQ answer.
        #[arg(long)]
        max_false: Option<usize>,
        cases: PathBuf,
    },
    /// Conversation threads, both sides, with each send's outcome.
    Log {
        #[arg(long, default_value = "kefu.yaml")]
        config: PathBuf,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Only this user (openid).
        #[arg(long)]
        user: Option<String>,
        /// How far back: 30m, 24h, 2d.
        #[arg(long, default_value = "2d")]
        since: String,
        /// Only exchanges whose message or reply contains this text.
        #[arg(long)]
        grep: Option<String>,
        /// At most this many exchanges (the newest); 0 for all.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// One JSON array of threads.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// One CSV row per line of a thread.
        #[arg(long)]
        csv: bool,
    },
    /// A user's session: `kefu session end --app APP OPENID` ends the handoff now.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Summarize the conversation log.
    Stats {
        #[arg(long, default_value = "kefu.yaml")]
        config: PathBuf,
        /// How far back: 30m, 24h, 7d.
        #[arg(long, default_value = "7d")]
        since: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// End a user's handoff (and menu) now, while the daemon runs: the bot answers again.
    End {
        #[arg(long, default_value = "kefu.yaml")]
        config: PathBuf,
        /// The app (its id in kefu.yaml).
        #[arg(long)]
        app: String,
        /// The user's openid.
        openid: String,
    },
}

impl Cli {
    /// The log filter when RUST_LOG is not set: the daemon logs at info, tools only warnings.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Serve { .. } => "info,actix_server=warn",
            _ => "warn",
        }
    }
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve::run(&config),
        Command::Check { config, rules } => check::run(config.as_deref(), rules.as_deref()),
        Command::Try {
            config,
            rules,
            json,
            user,
            at,
            event,
            event_key,
            msg_type,
            message,
        } => try_cmd::run(
            config.as_deref(),
            rules.as_deref(),
            json,
            &user,
            try_cmd::Input {
                at: at.as_deref(),
                event: event.as_deref(),
                event_key: event_key.as_deref(),
                msg_type: msg_type.as_deref(),
                message: message.as_deref(),
            },
        ),
        Command::Send {
            config,
            app,
            url,
            user,
            event,
            message,
        } => send::run(
            &config,
            app.as_deref(),
            url.as_deref(),
            &user,
            event.as_deref(),
            message.as_deref(),
        ),
        Command::Eval {
            config,
            at,
            rules,
            json,
            min_accuracy,
            max_false,
            cases,
        } => eval::run(
            config.as_deref(),
            rules.as_deref(),
            json,
            min_accuracy,
            max_false,
            &cases,
            at.as_deref(),
        ),
        Command::Log {
            config,
            app,
            user,
            since,
            grep,
            limit,
            json,
            csv,
        } => log::run_log(
            &load_settings(&config)?,
            &log::LogArgs {
                app,
                user,
                since,
                grep,
                limit,
            },
            match (json, csv) {
                (true, _) => log::LogFormat::Json,
                (_, true) => log::LogFormat::Csv,
                _ => log::LogFormat::Text,
            },
        ),
        Command::Session {
            command:
                SessionCommand::End {
                    config,
                    app,
                    openid,
                },
        } => log::run_session_end(&load_settings(&config)?, &app, &openid),
        Command::Stats {
            config,
            since,
            json,
        } => {
            stats::run_stats(&load_settings(&config)?, &since, json)?;
            Ok(ExitCode::SUCCESS)
        }
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
