//! `kefu eval`: runs `{q, expect, also}` cases through the same decision as the webhook (rules,
//! then FAQ, then default) and reports accuracy, false answers on off-topic cases and every miss.
//! Exit 1 below `--min-accuracy` or above `--max-false`.

use std::process::ExitCode;

use std::collections::HashMap;

use super::{load_trial, parse_at};
use crate::config::Settings;
use crate::dispatch::trial::{event_message, text_message};
use crate::dispatch::{self, Action, Context, Decision};
use crate::faq::eval::{
    Case, EvalAction, EvalDecision, EvalReport, Judged, evaluate_cases, load_cases,
};
use crate::rules::RuleSet;
use crate::store::Session;

/// What the evaluation sees of a decision.
pub fn eval_decision(d: &Decision) -> EvalDecision {
    let action = match (d.action, &d.faq) {
        (_, Some(faq)) => EvalAction::Faq { faq: faq.clone() },
        (Action::Clarify, _) => EvalAction::Clarify {
            options: d
                .session
                .as_ref()
                .and_then(|s| s.menu.as_ref())
                .map(|m| m.options.clone())
                .unwrap_or_default(),
        },
        (action, _) => EvalAction::Other {
            label: match &d.rule {
                Some(rule) => format!("{} (rule {rule})", action.as_str()),
                None => action.as_str().to_string(),
            },
        },
    };
    EvalDecision {
        action,
        score: d.candidates.first().map(|c| c.score),
    }
}

/// Evaluates cases: each at its `at` (else one minute after the previous case of its user, else
/// at `ctx`'s time); cases with the same `user` share a session, in file order; a case without
/// `user` is the first message of a fresh user. `settings` gives the time zone of `at`.
pub fn run_cases_at(
    set: &RuleSet,
    cases: &[Case],
    ctx: &Context,
    settings: Option<&Settings>,
) -> anyhow::Result<EvalReport> {
    // Every `at` is read first, so that a typo is an error rather than a case run at the wrong
    // time.
    let tz = settings.map_or(ctx.now.timezone(), |s| s.tz);
    let mut times = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        times.push(match &case.at {
            Some(at) => {
                Some(parse_at(at, tz).map_err(|e| anyhow::anyhow!("case {}: `at`: {e}", i + 1))?)
            }
            None => None,
        });
    }
    let mut sessions: HashMap<String, (Session, i64)> = HashMap::new();
    let mut index = 0usize;
    Ok(evaluate_cases(cases, |case| {
        let at = times.get(index).copied().flatten();
        index += 1;
        let (mut session, last) = match &case.user {
            Some(user) => sessions
                .get(user)
                .cloned()
                .unwrap_or((Session::default(), i64::MIN)),
            None => (Session::default(), i64::MIN),
        };
        let now = at.unwrap_or(if last == i64::MIN {
            ctx.now.timestamp()
        } else {
            last.saturating_add(60)
        });
        let case_ctx = Context {
            detail: ctx.detail,
            ..Context::at_unix(now, tz, ctx.handoff_minutes, ctx.menu_ttl_secs).with_pick(ctx.pick)
        };
        let openid = case.user.as_deref().unwrap_or("o_kefu_eval");
        let msg = match &case.event {
            Some(event) => event_message(openid, event, None, now),
            None => text_message(openid, &case.q, now),
        };
        let mut decision = dispatch::decide(set, &msg, &session, &case_ctx);
        let judged = Judged {
            decision: eval_decision(&decision),
            rule: decision.rule.clone(),
            handoff: decision.handoff,
        };
        if let Some(user) = &case.user {
            if let Some(next) = decision.session.take() {
                session = next;
            }
            sessions.insert(user.clone(), (session, now));
        }
        judged
    }))
}

/// `kefu eval`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub tool: super::ToolConfig,
    /// Run the cases at this time, "YYYY-MM-DD HH:MM" in the config's time zone (a case's own
    /// `at:` wins).
    #[arg(long)]
    pub at: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when accuracy (0..1 or percent) is below this.
    #[arg(long)]
    pub min_accuracy: Option<f64>,
    /// Exit 1 when more off-topic cases than this got an FAQ answer.
    #[arg(long)]
    pub max_false: Option<usize>,
    /// The cases file (the format of faq/dev-set.yaml).
    pub cases: std::path::PathBuf,
}

pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let (json, min_accuracy, max_false) = (args.json, args.min_accuracy, args.max_false);
    let (cases, at) = (args.cases.as_path(), args.at.as_deref());
    let Some((settings, set)) =
        load_trial(args.tool.config.as_deref(), args.tool.rules.as_deref())?
    else {
        return Ok(ExitCode::from(1));
    };
    // The error names the file already.
    let cases_path = cases.display().to_string();
    let cases = load_cases(cases)?;
    let now = match at {
        Some(at) => parse_at(at, settings.tz)?,
        None => chrono::Utc::now().timestamp(),
    };
    let ctx = settings.tool_context(now);
    let report =
        run_cases_at(&set, &cases, &ctx, Some(&settings)).map_err(|e| e.context(cases_path))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    // --min-accuracy accepts 0.95 or 95.
    let min = min_accuracy
        .map(|m| if m > 1.0 { m / 100.0 } else { m })
        .unwrap_or(0.0);
    let max = max_false.unwrap_or(usize::MAX);
    Ok(if report.passes(min, max) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
