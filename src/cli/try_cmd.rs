//! `kefu try`: what the bot would do with a message, without sending anything. With no MESSAGE
//! it reads one message per stdin line and keeps the user's session between lines, so that a
//! clarify menu can be answered with `1`.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use super::{ToolConfig, load_trial, parse_at};
use crate::dispatch::trial::{TryOutput, event_message, text_message, try_message, typed_message};
use crate::fetch::{Caller, Fetcher};
use crate::outbound::OutboundMessage;
use crate::store::Session;

/// What to try: a text (or stdin lines), an event or another message type, at a time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Input<'a> {
    /// `YYYY-MM-DD HH:MM` in the config's time zone; now when left out.
    pub at: Option<&'a str>,
    /// Try this event instead of a text.
    pub event: Option<&'a str>,
    /// The event's EventKey.
    pub event_key: Option<&'a str>,
    /// Try a message of this type instead of a text.
    pub msg_type: Option<&'a str>,
    /// The text (or a voice message's recognition); stdin lines when left out.
    pub message: Option<&'a str>,
}

/// `kefu try`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TryArgs {
    #[command(flatten)]
    pub tool: ToolConfig,
    /// One JSON object per message.
    #[arg(long)]
    pub json: bool,
    /// The user's openid (sessions are per user).
    #[arg(long, default_value = "o_kefu_try_user")]
    pub user: String,
    /// Try at this time, "YYYY-MM-DD HH:MM" in the config's time zone (schedules, calendars).
    #[arg(long)]
    pub at: Option<String>,
    /// Try this event instead of a text (e.g. user_enter_tempsession, kf_close_session).
    #[arg(long, conflicts_with = "msg_type")]
    pub event: Option<String>,
    /// The event's EventKey (with --event).
    #[arg(long, requires = "event")]
    pub event_key: Option<String>,
    /// Try a message of this type instead of a text (image, miniprogrampage, voice, …).
    #[arg(long)]
    pub msg_type: Option<String>,
    /// Make the backend calls of `fetch` rules for real and show the composed reply (without
    /// it, the request that would be made is shown).
    #[arg(long)]
    pub fetch: bool,
    /// The message's text; without it, one message per stdin line.
    pub message: Option<String>,
}

pub fn run(args: &TryArgs) -> anyhow::Result<ExitCode> {
    let (json, user) = (args.json, args.user.as_str());
    let input = Input {
        at: args.at.as_deref(),
        event: args.event.as_deref(),
        event_key: args.event_key.as_deref(),
        msg_type: args.msg_type.as_deref(),
        message: args.message.as_deref(),
    };
    let Some((settings, set)) =
        load_trial(args.tool.config.as_deref(), args.tool.rules.as_deref())?
    else {
        return Ok(ExitCode::from(1));
    };
    // A fixed --at: every line is tried at that time (plus a second per line, so that the
    // session's clock moves forward).
    let fixed = match input.at {
        Some(at) => Some(parse_at(at, settings.tz)?),
        None => None,
    };
    // `--fetch`: one small runtime and client for the backend calls.
    let fetching = if args.fetch {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Some((runtime, Fetcher::from_env()?))
    } else {
        None
    };
    let mut lines_seen = 0i64;
    let mut session = Session::default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut show = |text: &str, session: &mut Session| -> anyhow::Result<()> {
        let now = fixed.map_or_else(
            || chrono::Utc::now().timestamp(),
            |t| t.saturating_add(lines_seen),
        );
        lines_seen += 1;
        let ctx = settings.tool_context(now);
        let msg = match (input.event, input.msg_type) {
            (Some(event), _) => event_message(user, event, input.event_key, now),
            (None, Some(t)) => typed_message(user, t, Some(text).filter(|t| !t.is_empty()), now),
            (None, None) => text_message(user, text, now),
        };
        let mut decision = try_message(&set, &msg, session, &ctx);
        let mut fetch_lines = Vec::new();
        for reply in &mut decision.replies {
            if let OutboundMessage::Fetch(fetch) = reply {
                let caller = Caller {
                    app: settings.apps.first().map_or("try", |a| a.id.as_str()),
                    openid: user,
                };
                fetch_lines.push(format!(
                    "request: {}",
                    Fetcher::describe(&fetch.request, caller)
                ));
                if let Some((runtime, fetcher)) = &fetching {
                    let composed = runtime.block_on(fetcher.compose(caller, fetch, None));
                    fetch_lines.push(format!("fetch: {}", composed.outcome.describe()));
                    *reply = OutboundMessage::text(composed.text);
                }
            }
        }
        let label = match (input.event, input.msg_type) {
            (Some(event), _) => format!("[event {event}]"),
            (None, Some(t)) if text.is_empty() => format!("[{t}]"),
            (None, Some(t)) => format!("[{t}] {text}"),
            (None, None) => text.to_string(),
        };
        let view = TryOutput::new(&label, &decision);
        if json {
            writeln!(out, "{}", serde_json::to_string(&view)?)?;
        } else {
            writeln!(out, "> {label}")?;
            writeln!(
                out,
                "  action: {}{}{}{}",
                view.action,
                view.rule
                    .map(|r| format!("  rule: {r}"))
                    .unwrap_or_default(),
                view.faq.map(|f| format!("  faq: {f}")).unwrap_or_default(),
                if view.handoff { "  (handoff)" } else { "" }
            )?;
            writeln!(out, "  why: {}", view.why)?;
            for line in &fetch_lines {
                writeln!(out, "  {}", line.replace('\n', "\n  "))?;
            }
            for c in view.candidates.iter().take(3) {
                writeln!(out, "  candidate: {} {:.2}", c.faq, c.score)?;
            }
            for r in &view.replies {
                writeln!(out, "  reply: {}", r.replace('\n', "\n         "))?;
            }
        }
        out.flush()?;
        Ok(())
    };
    match input.message {
        Some(text) => show(text, &mut session)?,
        // An event or a typed message needs no text.
        None if input.event.is_some() || input.msg_type.is_some() => show("", &mut session)?,
        None => {
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                show(&line, &mut session)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
