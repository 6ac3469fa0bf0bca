//! Operator rules: YAML files → one immutable, compiled [`RuleSet`] (with the FAQ index), matched
//! at a cost that does not grow with the number of rules, and swapped atomically on reload.
//! STUB: to be implemented by the rules work. The public API below is what dispatch relies on.

pub mod reload;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::DateTime;
use chrono_tz::Tz;

use crate::diag::Diagnostic;
use crate::faq::{FaqIndex, FaqSettings};
use crate::outbound::OutboundMessage;

/// What a message offers to the conditions of a rule.
#[derive(Debug, Clone, Copy)]
pub struct MatchInput<'a> {
    /// `text`, `image`, `miniprogrampage`, `event`, or another MsgType.
    pub msg_type: &'a str,
    /// The event name for `event` messages.
    pub event: Option<&'a str>,
    /// The message text, normalized with [`crate::text::normalize`]; empty for non-text.
    pub text: &'a str,
    /// Now, in the config's time zone (for schedules).
    pub now: DateTime<Tz>,
}

/// Regex captures by name and by number (`{order}`, `{1}`), for reply templates.
pub type Captures = BTreeMap<String, String>;

/// The actions of a rule.
#[derive(Debug, Clone, Default)]
pub struct RuleAction {
    /// Reply templates; one picked at random unless `reply_all`.
    pub replies: Vec<String>,
    pub reply_all: bool,
    /// Answer with this FAQ entry.
    pub faq: Option<String>,
    /// Transfer to the human customer-service tool, after any replies.
    pub handoff: bool,
    /// Image, link and Mini Program card messages, sent after the text replies.
    pub media: Vec<OutboundMessage>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub priority: i64,
    pub is_default: bool,
    pub action: RuleAction,
}

/// The winning rule for a message.
#[derive(Debug, Clone)]
pub struct RuleHit<'a> {
    pub rule: &'a Rule,
    pub captures: Captures,
    /// One line for an operator: which condition matched where.
    pub why: String,
}

/// The compiled, immutable rules and FAQ of one rules folder.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    faq: FaqIndex,
}

/// The result of loading a folder: the set (when there is no error) and every problem found.
#[derive(Debug)]
pub struct LoadReport {
    pub set: Option<RuleSet>,
    pub diagnostics: Vec<Diagnostic>,
}

impl RuleSet {
    /// Loads and compiles every `*.yaml`/`*.yml` file under `dir`, recursively, in path order.
    pub fn load_dir(_dir: &Path, _faq: &FaqSettings) -> LoadReport {
        LoadReport {
            set: Some(RuleSet::default()),
            diagnostics: Vec::new(),
        }
    }

    /// Rules, not counting the FAQ entries.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub fn faq(&self) -> &FaqIndex {
        &self.faq
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// The highest-priority matching rule (ties: load order), never the default rule.
    pub fn match_message(&self, _input: &MatchInput<'_>) -> Option<RuleHit<'_>> {
        None
    }

    /// The `default: true` rule, if any.
    pub fn default_rule(&self) -> Option<&Rule> {
        self.rules.iter().find(|r| r.is_default)
    }
}

/// Fills `{name}` and `{1}` in a reply template from the captures; unknown names stay as written.
pub fn render_template(template: &str, captures: &Captures) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if captures.contains_key(&after[..close]) => {
                out.push_str(&captures[&after[..close]]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}
