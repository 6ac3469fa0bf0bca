//! `kefu log`: conversation threads, both sides, with each send's outcome; and `kefu session
//! end`: ends a user's handoff now, while the daemon runs (SPEC §9). Both go through the store's
//! [`Operations`](crate::store::Operations), so they work on every store.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use super::stats::parse_since;
use crate::store::history::{LogQuery, SessionEnd, ThreadView, view};

/// How `kefu log` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
    Csv,
}

/// `kefu log`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    #[command(flatten)]
    pub daemon: super::DaemonConfig,
    /// Only this app.
    #[arg(long)]
    pub app: Option<String>,
    /// Only this user (openid).
    #[arg(long)]
    pub user: Option<String>,
    /// How far back: 30m, 24h, 2d.
    #[arg(long, default_value = "2d")]
    pub since: String,
    /// Only exchanges whose message or reply contains this text.
    #[arg(long)]
    pub grep: Option<String>,
    /// At most this many exchanges (the newest); 0 for all.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// One JSON array of threads.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// One CSV row per line of a thread.
    #[arg(long)]
    pub csv: bool,
}

/// `kefu session end`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionEndArgs {
    #[command(flatten)]
    pub daemon: super::DaemonConfig,
    /// The app (its id in kefu.yaml).
    #[arg(long)]
    pub app: String,
    /// The user's openid.
    pub openid: String,
}

/// The text form: a header per thread, then one line per entry (long texts indented).
pub fn render_text(views: &[ThreadView]) -> String {
    let mut out = String::new();
    for v in views {
        let _ = writeln!(out, "== {} {} ==", v.app, v.openid);
        for e in &v.entries {
            let when = e.time.get(..19).unwrap_or(&e.time).replace('T', " ");
            let mut tag = String::new();
            match e.side {
                "user" => {
                    if let Some(action) = &e.action {
                        tag = match (&e.rule, &e.faq) {
                            (_, Some(f)) if action == "faq" => format!("  (faq {f})"),
                            (_, Some(f)) => format!("  ({action} faq {f})"),
                            (Some(r), None) => format!("  ({action} rule {r})"),
                            _ => format!("  ({action})"),
                        };
                    }
                }
                "send" => {
                    tag = format!(
                        "  [{}{}{}]",
                        e.outcome.as_deref().unwrap_or("?"),
                        e.errcode.map(|c| format!(" {c}")).unwrap_or_default(),
                        e.reason
                            .as_deref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    );
                }
                _ => {}
            }
            let text = e.text.replace('\n', "\n                              ");
            let _ = writeln!(out, "{when}  {:<8} {text}{tag}", e.side);
        }
        out.push('\n');
    }
    out
}

/// The CSV form: one row per entry, with a header.
pub fn render_csv(views: &[ThreadView]) -> String {
    fn field(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
    let mut out =
        String::from("time,app,openid,side,text,rule,faq,action,handoff,outcome,errcode,reason\n");
    for v in views {
        for e in &v.entries {
            let cells = [
                field(&e.time),
                field(&v.app),
                field(&v.openid),
                e.side.to_string(),
                field(&e.text),
                field(e.rule.as_deref().unwrap_or("")),
                field(e.faq.as_deref().unwrap_or("")),
                field(e.action.as_deref().unwrap_or("")),
                e.handoff.to_string(),
                field(e.outcome.as_deref().unwrap_or("")),
                e.errcode.map(|c| c.to_string()).unwrap_or_default(),
                field(e.reason.as_deref().unwrap_or("")),
            ];
            out.push_str(&cells.join(","));
            out.push('\n');
        }
    }
    out
}

/// `kefu log`.
pub fn run_log(args: &LogArgs) -> anyhow::Result<ExitCode> {
    let settings = &super::load_settings(&args.daemon.config)?;
    let format = match (args.json, args.csv) {
        (true, _) => LogFormat::Json,
        (_, true) => LogFormat::Csv,
        _ => LogFormat::Text,
    };
    if let Some(app) = &args.app
        && !settings.apps.iter().any(|a| &a.id == app)
    {
        bail!("--app {app}: no such app in {}", settings.source.display());
    }
    let secs = parse_since(&args.since)?;
    let now = crate::clock::unix_now();
    let ops = crate::startup::operations(settings)?;
    let query = LogQuery {
        app: args.app.clone(),
        openid: args.user.clone(),
        since: now.saturating_sub(secs),
        grep: args.grep.clone(),
        limit: args.limit,
    };
    let threads = ops
        .threads(&query)
        .context("kefu log: reading the conversation log")?;
    let views: Vec<ThreadView> = threads.iter().map(|t| view(t, settings.tz)).collect();
    let text = match format {
        LogFormat::Json => serde_json::to_string_pretty(&views)? + "\n",
        LogFormat::Csv => render_csv(&views),
        LogFormat::Text => {
            if views.is_empty() {
                eprintln!("no conversation matches (since {})", args.since);
            }
            render_text(&views)
        }
    };
    // `kefu log | less` quit early, or `| head`: a closed pipe is the reader's choice, not an
    // error.
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// `kefu session end --app APP OPENID`.
pub fn run_session_end(args: &SessionEndArgs) -> anyhow::Result<ExitCode> {
    let settings = &super::load_settings(&args.daemon.config)?;
    let (app, openid) = (args.app.as_str(), args.openid.as_str());
    if !settings.apps.iter().any(|a| a.id == app) {
        bail!("--app {app}: no such app in {}", settings.source.display());
    }
    let openid = openid.trim();
    if openid.is_empty() {
        bail!("OPENID is empty");
    }
    let ops = crate::startup::operations(settings)?;
    let outcome = ops
        .end_session(app, &openid.into(), crate::clock::unix_now())
        .context("kefu session end")?;
    match outcome {
        SessionEnd::Applied => {
            println!("{app} {openid}: handoff ended; the running kefu answers this user again")
        }
        SessionEnd::Stored => println!(
            "{app} {openid}: handoff ended in the store (no running kefu took the request; \
             one started later reads it)"
        ),
    }
    Ok(ExitCode::SUCCESS)
}
