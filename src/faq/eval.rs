//! Evaluation of FAQ decisions on a list of cases (the format of `faq/dev-set.yaml`), the core of
//! `kefu eval`.
//!
//! Knows nothing of how a decision is made: the caller passes a function from a message to an
//! [`EvalDecision`] (the real dispatcher for `kefu eval`, [`super::FaqIndex::ask`] in tests).
//!
//! # What counts as right
//!
//! - `expect: <faq id>`: that entry is answered (directly or through a rule with `faq:`).
//! - `expect: clarify`: the user is asked to choose (any menu).
//! - `expect: none` (off-topic): neither an FAQ answer nor a clarify menu; the default rule, a
//!   handoff, another rule's reply or nothing at all are right. An FAQ answer here is a **false
//!   answer**, the worst outcome, counted apart. A clarify menu here is a miss (the user is asked
//!   about something they did not raise) but not a false answer, since nothing untrue is said; it is
//!   counted apart too (`off_topic_clarify`).
//! - `also` lists further expectations (ids, `clarify`, `none`) that count as right.
//! - `rule:<id>`: that rule decided (small talk, a default rule, …); `handoff`: the user was
//!   transferred to a person.
//!
//! A case may also carry `at: "YYYY-MM-DD HH:MM"` (the time it is sent, config time zone),
//! `user: <name>` (cases with the same user are one conversation, in file order: the session —
//! a menu, a handoff, the count of misses — carries from one to the next) and `event: <name>`
//! instead of `q` (an event such as `kf_close_session`, the agent closing the session).

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Expect {
    /// This FAQ entry answers.
    Faq(String),
    /// A clarify menu.
    Clarify,
    /// Off-topic: no FAQ answer, no menu.
    None,
    /// This rule decided (`rule:<id>`).
    Rule(String),
    /// The user was transferred to a person.
    Handoff,
}

impl From<String> for Expect {
    fn from(s: String) -> Self {
        match s.trim() {
            "clarify" => Expect::Clarify,
            "none" => Expect::None,
            "handoff" => Expect::Handoff,
            id => match id.strip_prefix("rule:") {
                Some(rule) => Expect::Rule(rule.trim().to_string()),
                None => Expect::Faq(id.to_string()),
            },
        }
    }
}

impl From<Expect> for String {
    fn from(e: Expect) -> Self {
        e.to_string()
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Faq(id) => f.write_str(id),
            Expect::Clarify => f.write_str("clarify"),
            Expect::None => f.write_str("none"),
            Expect::Rule(id) => write!(f, "rule:{id}"),
            Expect::Handoff => f.write_str("handoff"),
        }
    }
}

/// One case: a message and what should happen to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// The message as a user types it (empty for an `event` case).
    #[serde(default)]
    pub q: String,
    /// The expected outcome.
    pub expect: Expect,
    /// Other outcomes that count as right.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Expect>,
    /// When the message is sent, `YYYY-MM-DD HH:MM` in the config's time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Cases with the same user are one conversation, in file order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// An event pushed instead of a text (`kf_close_session`, `user_enter_tempsession`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// The file: `cases:` and nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    cases: Vec<Case>,
}

/// Why a cases file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadCasesError {
    /// The file could not be read (the io error is the source: `{:#}` prints it once).
    #[error("{path}: cannot read the cases file")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The YAML is malformed or not a `cases:` list.
    #[error("{path}:{line}:{column}: {message}")]
    Yaml {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A case with an empty message or expectation.
    #[error("{path}: case {index}: {message}")]
    Invalid {
        path: String,
        index: usize,
        message: String,
    },
}

/// Reads a cases file.
pub fn load_cases(path: &Path) -> Result<Vec<Case>, LoadCasesError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadCasesError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_cases(&path.display().to_string(), &text)
}

/// Parses the text of a cases file; `path` only names it in errors.
pub fn parse_cases(path: &str, text: &str) -> Result<Vec<Case>, LoadCasesError> {
    let file: CaseFile = serde_yaml::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        LoadCasesError::Yaml {
            path: path.to_string(),
            line,
            column,
            message: e.to_string(),
        }
    })?;
    for (i, case) in file.cases.iter().enumerate() {
        let invalid = |message: &str| LoadCasesError::Invalid {
            path: path.to_string(),
            index: i + 1,
            message: message.to_string(),
        };
        if case.q.trim().is_empty() && case.event.is_none() {
            return Err(invalid("empty `q`"));
        }
        if case.expect == Expect::Faq(String::new())
            || case.also.contains(&Expect::Faq(String::new()))
        {
            return Err(invalid("empty expectation"));
        }
    }
    Ok(file.cases)
}

/// What the bot did with a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum EvalAction {
    /// Answered with this FAQ entry.
    Faq { faq: String },
    /// Asked the user to choose among these entries.
    Clarify { options: Vec<String> },
    /// Anything else: a rule's reply, the default rule, a handoff, nothing (`label` says which).
    Other { label: String },
}

/// The action and the FAQ matcher's best score (none when the matcher did not run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalDecision {
    /// What was done.
    #[serde(flatten)]
    pub action: EvalAction,
    /// The best FAQ score seen, if any.
    pub score: Option<f32>,
}

impl fmt::Display for EvalAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalAction::Faq { faq } => write!(f, "{faq}"),
            EvalAction::Clarify { options } => write!(f, "clarify [{}]", options.join(", ")),
            EvalAction::Other { label } => write!(f, "{label}"),
        }
    }
}

/// A case the bot got wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Miss {
    /// The message.
    pub q: String,
    /// What was expected.
    pub expect: Expect,
    /// Also acceptable.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Expect>,
    /// What was done instead, with the best score.
    pub got: EvalDecision,
    /// An FAQ answer to an off-topic case.
    pub false_answer: bool,
}

/// The figures of one evaluation run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Cases run.
    pub total: usize,
    /// Cases right.
    pub right: usize,
    /// right / total (1.0 for no cases).
    pub accuracy: f64,
    /// Cases expecting `none`.
    pub off_topic: usize,
    /// Off-topic cases answered with an FAQ entry: must be 0.
    pub false_answers: usize,
    /// Off-topic cases offered a clarify menu (misses, but not false answers).
    pub off_topic_clarify: usize,
    /// Any case answered with an entry it did not expect (false answers included).
    pub wrong_answers: usize,
    /// Every case got wrong, in file order.
    pub misses: Vec<Miss>,
}

impl EvalReport {
    /// Whether the run meets both thresholds.
    pub fn passes(&self, min_accuracy: f64, max_false: usize) -> bool {
        self.accuracy + 1e-9 >= min_accuracy && self.false_answers <= max_false
    }
}

/// A decision with what the rule-level expectations (`rule:<id>`, `handoff`) look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// What the FAQ-level expectations look at.
    pub decision: EvalDecision,
    /// The rule that decided, if any.
    pub rule: Option<String>,
    /// Whether the user was transferred to a person.
    pub handoff: bool,
}

fn satisfies_judged(expect: &Expect, judged: &Judged) -> bool {
    match expect {
        Expect::Rule(id) => judged.rule.as_deref() == Some(id.as_str()),
        Expect::Handoff => judged.handoff,
        other => satisfies(other, &judged.decision.action),
    }
}

fn satisfies(expect: &Expect, action: &EvalAction) -> bool {
    match (expect, action) {
        (Expect::Faq(id), EvalAction::Faq { faq }) => id == faq,
        (Expect::Clarify, EvalAction::Clarify { .. }) => true,
        (Expect::None, EvalAction::Other { .. }) => true,
        _ => false,
    }
}

/// Runs every case through `decide` and tallies the results.
pub fn evaluate(cases: &[Case], decide: impl Fn(&str) -> EvalDecision) -> EvalReport {
    evaluate_cases(cases, |case| Judged {
        decision: decide(&case.q),
        rule: None,
        handoff: false,
    })
}

/// [`evaluate`], with the whole case given to `decide` (its time, user and event), in file
/// order, and the rule-level expectations checked too.
pub fn evaluate_cases(cases: &[Case], mut decide: impl FnMut(&Case) -> Judged) -> EvalReport {
    let mut report = EvalReport {
        total: cases.len(),
        right: 0,
        accuracy: 1.0,
        off_topic: 0,
        false_answers: 0,
        off_topic_clarify: 0,
        wrong_answers: 0,
        misses: Vec::new(),
    };
    for case in cases {
        let judged = decide(case);
        let right = std::iter::once(&case.expect)
            .chain(&case.also)
            .any(|e| satisfies_judged(e, &judged));
        let decision = judged.decision;
        let off_topic = case.expect == Expect::None;
        if off_topic {
            report.off_topic += 1;
        }
        if right {
            report.right += 1;
            continue;
        }
        let answered = matches!(decision.action, EvalAction::Faq { .. });
        let false_answer = off_topic && answered;
        if false_answer {
            report.false_answers += 1;
        }
        if answered {
            report.wrong_answers += 1;
        }
        if off_topic && matches!(decision.action, EvalAction::Clarify { .. }) {
            report.off_topic_clarify += 1;
        }
        report.misses.push(Miss {
            q: match (&case.event, case.q.is_empty()) {
                (Some(event), true) => format!("[event {event}]"),
                _ => case.q.clone(),
            },
            expect: case.expect.clone(),
            also: case.also.clone(),
            got: decision,
            false_answer,
        });
    }
    if report.total > 0 {
        report.accuracy = report.right as f64 / report.total as f64;
    }
    report
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} cases: {} right ({:.1}%), {} false answers on {} off-topic cases, {} off-topic menus, {} wrong answers",
            self.total,
            self.right,
            self.accuracy * 100.0,
            self.false_answers,
            self.off_topic,
            self.off_topic_clarify,
            self.wrong_answers
        )?;
        for miss in &self.misses {
            let expected = std::iter::once(&miss.expect)
                .chain(&miss.also)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | ");
            let score = miss
                .got
                .score
                .map_or_else(|| "-".to_string(), |s| format!("{s:.3}"));
            let flag = if miss.false_answer {
                "  FALSE ANSWER"
            } else {
                ""
            };
            writeln!(
                f,
                "  miss: {:?} expected {expected}, got {} (score {score}){flag}",
                miss.q, miss.got.action
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide_table(q: &str) -> EvalDecision {
        let action = match q {
            "a" => EvalAction::Faq { faq: "x".into() },
            "b" => EvalAction::Clarify {
                options: vec!["x".into(), "y".into()],
            },
            _ => EvalAction::Other {
                label: "default".into(),
            },
        };
        EvalDecision {
            action,
            score: Some(0.5),
        }
    }

    fn case(q: &str, expect: &str, also: &[&str]) -> Case {
        Case {
            q: q.into(),
            expect: expect.to_string().into(),
            also: also.iter().map(|a| a.to_string().into()).collect(),
            at: None,
            user: None,
            event: None,
        }
    }

    #[test]
    fn cases_parse_from_the_dev_set_format() {
        let cases = parse_cases(
            "t.yaml",
            "cases:\n  - {q: \"注销\", expect: clarify}\n  - {q: x, expect: mp-dereg-general, also: [none]}\n",
        )
        .unwrap();
        assert_eq!(cases[0].expect, Expect::Clarify);
        assert_eq!(cases[1].expect, Expect::Faq("mp-dereg-general".into()));
        assert_eq!(cases[1].also, vec![Expect::None]);
    }

    #[test]
    fn malformed_cases_files_are_located() {
        let err = parse_cases("t.yaml", "cases:\n  - {q: x}\n").unwrap_err();
        assert!(err.to_string().starts_with("t.yaml:2:"), "{err}");
        let err = parse_cases("t.yaml", "cases:\n  - {q: \" \", expect: none}\n").unwrap_err();
        assert_eq!(err.to_string(), "t.yaml: case 1: empty `q`");
    }

    #[test]
    fn right_wrong_false_answers_and_menus_are_tallied() {
        let cases = vec![
            case("a", "x", &[]),       // right
            case("b", "clarify", &[]), // right
            case("c", "none", &[]),    // right
            case("a", "none", &[]),    // false answer
            case("b", "none", &[]),    // off-topic menu
            case("a", "y", &[]),       // wrong answer
            case("c", "y", &["none"]), // right through `also`
            case("c", "clarify", &[]), // miss, no answer
        ];
        let report = evaluate(&cases, decide_table);
        assert_eq!(report.total, 8);
        assert_eq!(report.right, 4);
        assert_eq!(report.off_topic, 3);
        assert_eq!(report.false_answers, 1);
        assert_eq!(report.off_topic_clarify, 1);
        assert_eq!(report.wrong_answers, 2);
        assert_eq!(report.misses.len(), 4);
        assert!(report.misses[0].false_answer);
        assert!(report.passes(0.5, 1));
        assert!(!report.passes(0.5, 0));
        assert!(!report.passes(0.6, 1));
        let text = report.to_string();
        assert!(text.starts_with("8 cases: 4 right (50.0%), 1 false answers on 3 off-topic cases"));
        assert!(text.contains("miss: \"a\" expected none, got x (score 0.500)  FALSE ANSWER"));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["misses"][1]["got"]["action"], "clarify");
        assert_eq!(json["misses"][0]["expect"], "none");
    }

    #[test]
    fn no_cases_is_full_accuracy() {
        let report = evaluate(&[], decide_table);
        assert_eq!(report.accuracy, 1.0);
        assert!(report.passes(0.95, 0));
    }
}
