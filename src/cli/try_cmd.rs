//! `kefu try`: what the bot would do with a message, without sending anything. With no MESSAGE
//! it reads one message per stdin line and keeps the user's session between lines, so that a
//! clarify menu can be answered with `1`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use super::{check::load_rules, load_settings_or_default};
use crate::dispatch::{self, Context, Decision};
use crate::faq::Candidate;
use crate::protocol::{InboundMessage, MsgId, MsgKind};
use crate::rules::RuleSet;
use crate::store::Session;

/// One line of `kefu try --json` (SPEC §1).
#[derive(Debug, Serialize)]
pub struct TryOutput<'a> {
    pub input: &'a str,
    pub rule: Option<&'a str>,
    pub faq: Option<&'a str>,
    pub action: &'static str,
    pub replies: Vec<String>,
    pub handoff: bool,
    pub candidates: &'a [Candidate],
    pub why: &'a str,
}

impl<'a> TryOutput<'a> {
    pub fn new(input: &'a str, d: &'a Decision) -> Self {
        Self {
            input,
            rule: d.rule.as_deref(),
            faq: d.faq.as_deref(),
            action: d.action.as_str(),
            replies: d.replies.iter().map(|r| r.preview()).collect(),
            handoff: d.handoff,
            candidates: &d.candidates,
            why: &d.why,
        }
    }
}

/// A text message from `user`, as a push would carry it.
pub fn text_message(user: &str, text: &str, now: i64) -> InboundMessage {
    InboundMessage {
        to_user_name: "gh_kefu_try".into(),
        from_user_name: user.into(),
        create_time: now,
        msg_id: Some(MsgId::Number(now as u64)),
        kind: MsgKind::Text {
            content: text.into(),
        },
    }
}

/// Decides one message and carries the session forward.
pub fn try_one(
    set: &RuleSet,
    user: &str,
    text: &str,
    session: &mut Session,
    ctx: &Context,
) -> Decision {
    let msg = text_message(user, text, ctx.now.timestamp());
    let mut decision = dispatch::decide(set, &msg, session, ctx);
    if let Some(next) = decision.session.take() {
        *session = next;
    }
    decision
}

pub fn run(
    config: &Path,
    rules: Option<&Path>,
    json: bool,
    user: &str,
    message: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let settings = load_settings_or_default(config)?;
    let dir = rules
        .map(Path::to_path_buf)
        .unwrap_or_else(|| settings.rules_dir.clone());
    let Some(set) = load_rules(&dir, &settings)? else {
        return Ok(ExitCode::from(1));
    };
    let handoff_minutes = settings
        .apps
        .first()
        .map(|a| a.handoff_minutes)
        .unwrap_or(30);
    let mut session = Session::default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut show = |text: &str, session: &mut Session| -> anyhow::Result<()> {
        let now = chrono::Utc::now().timestamp();
        let ctx = Context::at_unix(
            now,
            settings.tz,
            handoff_minutes,
            settings.faq.menu_ttl_secs,
        );
        let decision = try_one(&set, user, text, session, &ctx);
        let view = TryOutput::new(text, &decision);
        if json {
            writeln!(out, "{}", serde_json::to_string(&view)?)?;
        } else {
            writeln!(out, "> {text}")?;
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
    match message {
        Some(text) => show(text, &mut session)?,
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
