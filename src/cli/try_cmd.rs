//! `kefu try`: what the bot would do with a message, without sending anything. With no MESSAGE
//! it reads one message per stdin line and keeps the user's session between lines, so that a
//! clarify menu can be answered with `1`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use super::load_trial;
use crate::dispatch::Context;
use crate::dispatch::trial::{TryOutput, try_one};
use crate::store::Session;

pub fn run(
    config: &Path,
    rules: Option<&Path>,
    json: bool,
    user: &str,
    message: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let Some((settings, set)) = load_trial(config, rules)? else {
        return Ok(ExitCode::from(1));
    };
    let mut session = Session::default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut show = |text: &str, session: &mut Session| -> anyhow::Result<()> {
        let now = chrono::Utc::now().timestamp();
        let ctx = Context::for_tools(&settings, now);
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
