//! `kefu log`: conversation threads, both sides, with each send's outcome; and `kefu session
//! end`: ends a user's handoff now, while the daemon runs (SPEC §9). Both go through the store's
//! [`Operations`](crate::store::Operations), so they work on every store.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::stats::parse_since;
use crate::config::Settings;
use crate::store::history::{LogQuery, SessionEnd, Thread};

/// How `kefu log` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
    Csv,
}

/// What `kefu log` was asked for.
#[derive(Debug, Clone, Default)]
pub struct LogArgs {
    pub app: Option<String>,
    pub user: Option<String>,
    pub since: String,
    pub grep: Option<String>,
    pub limit: usize,
}

/// One line of a thread, in time order: what the user sent, what the bot answered, what became
/// of each send, an agent's or an operator's action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Local time in the config's time zone (RFC 3339).
    pub time: String,
    /// Unix seconds.
    pub at: i64,
    /// `user`, `bot`, `send`, `agent`, `operator`.
    pub side: &'static str,
    /// The text (a user's message, a reply, a send's message, a description of an event).
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faq: Option<String>,
    /// The decision (`reply`, `faq`, `handoff`, …) for user lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Whether the user was transferred to a person.
    pub handoff: bool,
    /// For send lines: `sent`, `failed`, `dropped`, `retrying`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A thread as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadView {
    pub app: String,
    pub openid: String,
    pub entries: Vec<Entry>,
}

/// Flattens a thread into its lines, in time order (a push's bot lines right after it, a send's
/// outcome at its own time).
pub fn view(thread: &Thread, tz: chrono_tz::Tz) -> ThreadView {
    let time = |at: i64| {
        chrono::DateTime::from_timestamp(at, 0)
            .map(|t| t.with_timezone(&tz).to_rfc3339())
            .unwrap_or_default()
    };
    // (at, order within the same second, entry)
    let mut lines: Vec<(i64, usize, Entry)> = Vec::new();
    let mut seq = 0usize;
    let mut push = |at: i64, entry: Entry, lines: &mut Vec<(i64, usize, Entry)>| {
        seq += 1;
        lines.push((at, seq, entry));
    };
    for e in &thread.exchanges {
        let base = Entry {
            time: time(e.at),
            at: e.at,
            side: "user",
            text: String::new(),
            rule: e.rule.clone(),
            faq: e.faq.clone(),
            action: Some(e.action.clone()),
            handoff: e.handoff,
            outcome: None,
            errcode: None,
            reason: None,
        };
        let (side, text) = match (e.msg_type.as_str(), &e.event, &e.text) {
            ("operator", _, _) => ("operator", "ended the user's handoff".to_string()),
            (_, Some(event), _) if event.starts_with("kf_") => (
                "agent",
                format!(
                    "[{event}{}]",
                    e.agent
                        .as_deref()
                        .map(|a| format!(" by {a}"))
                        .unwrap_or_default()
                ),
            ),
            (_, Some(event), _) => ("user", format!("[event {event}]")),
            ("text", _, Some(text)) => ("user", text.clone()),
            ("voice", _, Some(text)) => ("user", format!("[voice] {text}")),
            (kind, _, _) => ("user", format!("[{kind}]")),
        };
        push(
            e.at,
            Entry {
                side,
                text,
                ..base.clone()
            },
            &mut lines,
        );
        for reply in &e.replies {
            push(
                e.at,
                Entry {
                    side: if e.msg_type == "operator" {
                        "operator"
                    } else {
                        "bot"
                    },
                    text: reply.clone(),
                    action: None,
                    handoff: false,
                    ..base.clone()
                },
                &mut lines,
            );
        }
        if e.handoff {
            push(
                e.at,
                Entry {
                    side: "bot",
                    text: "[transferred to a person]".into(),
                    action: Some("handoff".into()),
                    ..base.clone()
                },
                &mut lines,
            );
        }
    }
    for s in &thread.sends {
        push(
            s.at,
            Entry {
                time: time(s.at),
                at: s.at,
                side: "send",
                text: s.summary.clone().unwrap_or_default(),
                rule: None,
                faq: None,
                action: None,
                handoff: false,
                outcome: Some(s.outcome.clone()),
                errcode: s.errcode,
                reason: s.reason.clone(),
            },
            &mut lines,
        );
    }
    // Stable: a send logged in the same second as its push comes after the push's lines.
    lines.sort_by_key(|(at, seq, e)| (*at, e.side == "send", *seq));
    ThreadView {
        app: thread.app.clone(),
        openid: thread.openid.clone(),
        entries: lines.into_iter().map(|(_, _, e)| e).collect(),
    }
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
                        let by = match (&e.rule, &e.faq) {
                            (_, Some(f)) => format!(" faq {f}"),
                            (Some(r), None) => format!(" rule {r}"),
                            _ => String::new(),
                        };
                        tag = format!("  ({action}{by})");
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
pub fn run_log(settings: &Settings, args: &LogArgs, format: LogFormat) -> anyhow::Result<ExitCode> {
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
    match format {
        LogFormat::Json => println!("{}", serde_json::to_string_pretty(&views)?),
        LogFormat::Csv => print!("{}", render_csv(&views)),
        LogFormat::Text => {
            if views.is_empty() {
                eprintln!("no conversation matches (since {})", args.since);
            }
            print!("{}", render_text(&views));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kefu session end --app APP OPENID`.
pub fn run_session_end(settings: &Settings, app: &str, openid: &str) -> anyhow::Result<ExitCode> {
    if !settings.apps.iter().any(|a| a.id == app) {
        bail!("--app {app}: no such app in {}", settings.source.display());
    }
    let openid = openid.trim();
    if openid.is_empty() {
        bail!("OPENID is empty");
    }
    let ops = crate::startup::operations(settings)?;
    let outcome = ops
        .end_session(app, openid, crate::clock::unix_now())
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
