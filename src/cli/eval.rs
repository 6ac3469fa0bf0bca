//! `kefu eval`: runs `{q, expect, also}` cases through the same decision as the webhook (rules,
//! then FAQ, then default) and reports accuracy, false answers on off-topic cases and every miss.
//! Exit 1 below `--min-accuracy` or above `--max-false`.

use std::path::Path;
use std::process::ExitCode;

use super::load_trial;
use crate::dispatch::trial::text_message;
use crate::dispatch::{self, Action, Context, Decision};
use crate::faq::eval::{EvalAction, EvalDecision, EvalReport, evaluate, load_cases};
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

/// Evaluates cases against a rule set, each case as the first message of a fresh user.
pub fn run_cases(set: &RuleSet, cases: &[crate::faq::eval::Case], ctx: &Context) -> EvalReport {
    evaluate(cases, |q| {
        let msg = text_message("o_kefu_eval", q, ctx.now.timestamp());
        eval_decision(&dispatch::decide(set, &msg, &Session::default(), ctx))
    })
}

pub fn run(
    config: &Path,
    rules: Option<&Path>,
    json: bool,
    min_accuracy: Option<f64>,
    max_false: Option<usize>,
    cases: &Path,
) -> anyhow::Result<ExitCode> {
    let Some((settings, set)) = load_trial(config, rules)? else {
        return Ok(ExitCode::from(1));
    };
    // The error names the file already.
    let cases = load_cases(cases)?;
    let ctx = Context::for_tools(&settings, chrono::Utc::now().timestamp());
    let report = run_cases(&set, &cases, &ctx);
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
