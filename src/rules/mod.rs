//! Operator rules: YAML files → one immutable, compiled [`RuleSet`] (with the FAQ index), matched
//! at a cost that does not grow with the number of rules, and swapped atomically on reload.
//!
//! A tour, in the order a rules folder travels:
//! - [`load`]: the folder walk and YAML → located specs ([`model`] is the serde mirror); syntax,
//!   unknown keys and wrong types, each at `path:line:column`;
//! - [`compile`]: one rule at a time → a draft (normalized keywords, regexes compiled once with a
//!   size limit, schedules, actions) and the per-rule errors;
//! - [`lint`]: checks across rules (duplicate ids, defaults, FAQ references, `examples`) and the
//!   warnings (shared keywords, shadowed rules, long replies, too many messages);
//! - [`matcher`]: one Aho-Corasick automaton (every keyword, and the literals every match of a
//!   regex starts with), one exact-value map, one `RegexSet` (the regexes without such literals)
//!   and a message-type index over all rules; the decision for one message;
//! - [`schedule`]: days and hours, against the clock the caller passes in;
//! - [`reload`]: the [`reload::RulesHandle`] that serves one set and swaps in the next, and the
//!   folder watcher.
//!
//! - [`fetch`]: a rule's `fetch` action, checked against `fetch_hosts` and the environment
//!   ([`LoadOptions`]); [`files`]: the image files rules name, checked on disk.
//!
//! Everything but `load::read_folder`, `files` (which looks at the image files) and `reload` is
//! pure: no I/O, no clock, no actix or reqwest; the environment reaches `fetch` only through
//! [`LoadOptions`]. Nothing here depends on dispatch, http or the store.

pub mod compile;
pub mod fetch;
pub mod files;
pub mod lint;
pub mod load;
pub mod matcher;
pub mod model;
pub mod reload;
#[cfg(test)]
mod replies_tests;
pub mod schedule;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::DateTime;
use chrono_tz::Tz;

use crate::diag::{Diagnostic, Location};
use crate::faq::{FaqIndex, FaqSettings};
use crate::outbound::OutboundMessage;

pub use fetch::{FetchAction, LoadOptions};
pub use load::SourceFile;
pub use reload::{ReloadOutcome, RulesHandle, RulesStatus, spawn_watcher};

use compile::Draft;
use matcher::{Found, Matcher, Schedules};
pub use schedule::{Calendar, Schedule};

/// What a message offers to the conditions of a rule.
#[derive(Debug, Clone, Copy)]
pub struct MatchInput<'a> {
    /// `text`, `image`, `miniprogrampage`, `event`, or another MsgType.
    pub msg_type: &'a str,
    /// The event name for `event` messages.
    pub event: Option<&'a str>,
    /// The event's `EventKey` (a subscribe event's without its `qrscene_` prefix).
    pub event_key: Option<&'a str>,
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
    /// Send every reply, in order, instead of one picked at random.
    pub reply_all: bool,
    /// Answer with this FAQ entry.
    pub faq: Option<String>,
    /// Transfer to the human customer-service tool, after any replies.
    pub handoff: bool,
    /// Image, link and Mini Program card messages, sent after the text replies.
    pub media: Vec<OutboundMessage>,
    /// Ask the operator's backend first: the reply is composed from its answer.
    pub fetch: Option<FetchAction>,
}

impl RuleAction {
    /// Whether a reply can use the captures of a regex: a template with a `{…}` in it, or a
    /// `fetch` (its URL, body and template).
    pub fn uses_captures(&self) -> bool {
        self.fetch.is_some() || self.replies.iter().any(|t| t.contains('{'))
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique across the folder; names the rule in logs, stats and `kefu try`.
    pub id: String,
    /// Higher wins; ties go to the rule loaded first.
    pub priority: i64,
    /// A `default: true` rule: used when no rule and no FAQ entry applies.
    pub is_default: bool,
    /// A default rule's `schedule`, if any.
    pub default_schedule: Option<Schedule>,
    /// A default rule's `misses: N` (0: from the first miss).
    pub misses: u32,
    /// What a hit does.
    pub action: RuleAction,
    /// Where the rule is written, for operators (`kefu try`, the console).
    pub location: Location,
}

/// The winning rule for a message.
#[derive(Debug, Clone)]
pub struct RuleHit<'a> {
    /// The winner.
    pub rule: &'a Rule,
    /// Captures of its first matching regex, for [`render_template`]; empty when no reply of
    /// the rule can use them ([`RuleAction::uses_captures`]).
    pub captures: Captures,
    /// What the matcher found, for [`RuleSet::explain`].
    found: Found,
}

/// The compiled, immutable rules and FAQ of one rules folder. `Send + Sync`; shared behind an
/// `Arc` and replaced whole on reload.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// Every rule, the default rule included, in load order.
    rules: Vec<Rule>,
    /// The FAQ entries of the same folder: they swap together with the rules.
    faq: FaqIndex,
    /// The shared indexes over all rules' conditions.
    matcher: Matcher,
    /// Rule id → index in `rules`.
    by_id: HashMap<String, usize>,
    /// Indexes of the default rules, highest priority first (ties: load order).
    defaults: Vec<usize>,
    /// Holidays and working days of every file's `calendar:`.
    calendar: Calendar,
}

/// The result of loading a folder: the set (when there is no error) and every problem found.
#[derive(Debug)]
pub struct LoadReport {
    /// `None` when any diagnostic is an error: the set is refused whole.
    pub set: Option<RuleSet>,
    /// Errors and warnings, sorted by location.
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadReport {
    /// Whether any diagnostic refuses the set.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

impl RuleSet {
    /// Loads and compiles every `*.yaml`/`*.yml` file under `dir`, recursively, in path order.
    /// With the default [`LoadOptions`] (no `fetch_hosts`).
    pub fn load_dir(dir: &Path, faq: &FaqSettings) -> LoadReport {
        Self::load_dir_with(dir, faq, &LoadOptions::default())
    }

    /// [`RuleSet::load_dir`] with the settings of `kefu.yaml` (`fetch_hosts`, …).
    pub fn load_dir_with(dir: &Path, faq: &FaqSettings, options: &LoadOptions) -> LoadReport {
        let (files, diagnostics) = load::read_folder(dir);
        compile_files(dir, &files, diagnostics, faq, options)
    }

    /// Compiles files already read (what [`RuleSet::load_dir`] does after reading the folder);
    /// `dir` locates a problem that belongs to no file, and the image files rules name.
    pub fn load_files(dir: &Path, files: &[SourceFile], faq: &FaqSettings) -> LoadReport {
        Self::load_files_with(dir, files, faq, &LoadOptions::default())
    }

    /// [`RuleSet::load_files`] with the settings of `kefu.yaml`.
    pub fn load_files_with(
        dir: &Path,
        files: &[SourceFile],
        faq: &FaqSettings,
        options: &LoadOptions,
    ) -> LoadReport {
        compile_files(dir, files, Vec::new(), faq, options)
    }

    /// Rules, not counting the FAQ entries.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub fn faq(&self) -> &FaqIndex {
        &self.faq
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.by_id.get(id).and_then(|&i| self.rules.get(i))
    }

    /// Every rule, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The highest-priority matching rule (ties: load order), never the default rule.
    /// Its regex's captures are filled only when one of its replies can use them.
    pub fn match_message(&self, input: &MatchInput<'_>) -> Option<RuleHit<'_>> {
        let found = self.matcher.find(input, Schedules::Respect)?;
        let rule = self.rules.get(found.index)?;
        let captures = if rule.action.uses_captures() {
            self.matcher.captures(&found, input.text)
        } else {
            Captures::new()
        };
        Some(RuleHit {
            rule,
            captures,
            found,
        })
    }

    /// One line for an operator on why `hit` won `input`: which condition matched where, in
    /// character offsets of the normalized text, e.g. `keyword 人工 at chars 2..4 (rule human)`.
    /// Rendered on request only (`kefu try`, `kefu eval`, the console), never for a push.
    pub fn explain(&self, hit: &RuleHit<'_>, input: &MatchInput<'_>) -> String {
        format!(
            "{} (rule {})",
            self.matcher.explain(&hit.found, input),
            hit.rule.id
        )
    }

    /// The first `default: true` rule, if any (the one without conditions when there is one).
    pub fn default_rule(&self) -> Option<&Rule> {
        self.defaults
            .iter()
            .filter_map(|&i| self.rules.get(i))
            .find(|r| r.misses == 0 && r.default_schedule.is_none())
            .or_else(|| self.defaults.first().and_then(|&i| self.rules.get(i)))
    }

    /// The highest-priority default rule whose conditions hold at `now` for a user whose
    /// consecutive misses, this message included, are `misses`.
    pub fn pick_default(&self, now: &DateTime<Tz>, misses: u32) -> Option<&Rule> {
        self.defaults
            .iter()
            .filter_map(|&i| self.rules.get(i))
            .find(|r| {
                r.misses <= misses
                    && r.default_schedule
                        .is_none_or(|s| s.holds_in(now, &self.calendar))
            })
    }

    /// Whether any default rule counts misses (`misses: N`).
    pub fn counts_misses(&self) -> bool {
        self.defaults
            .iter()
            .filter_map(|&i| self.rules.get(i))
            .any(|r| r.misses > 0)
    }

    /// The holidays and working days the schedules use.
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }
}

/// Loads every folder as `kefu check` does and returns all problems, errors and warnings,
/// sorted by location.
pub fn check_dirs(dirs: &[PathBuf], faq: &FaqSettings, options: &LoadOptions) -> Vec<Diagnostic> {
    let mut all: Vec<Diagnostic> = Vec::new();
    let mut seen: HashSet<&PathBuf> = HashSet::new();
    for dir in dirs {
        if seen.insert(dir) {
            all.extend(RuleSet::load_dir_with(dir, faq, options).diagnostics);
        }
    }
    sort_diagnostics(&mut all);
    all
}

fn sort_diagnostics(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| {
        a.location
            .cmp(&b.location)
            .then_with(|| b.severity.cmp(&a.severity))
            .then_with(|| a.message.cmp(&b.message))
    });
    diagnostics.dedup();
}

/// Files → specs → drafts → checks → matcher and FAQ index → the set, or every problem.
fn compile_files(
    dir: &Path,
    files: &[SourceFile],
    mut diagnostics: Vec<Diagnostic>,
    settings: &FaqSettings,
    options: &LoadOptions,
) -> LoadReport {
    let parsed = load::parse_files(files, &mut diagnostics);
    let drafts: Vec<Draft> = parsed
        .rules
        .iter()
        .map(|rule| compile::draft(rule, dir, options, &mut diagnostics))
        .collect();
    let faq_ids: HashSet<String> = parsed
        .faq
        .entries
        .iter()
        .map(|e| e.value.id.clone())
        .collect();
    lint::cross_rule_errors(&drafts, &faq_ids, &mut diagnostics);
    let (faq, faq_diagnostics) = FaqIndex::build(parsed.faq, settings);
    diagnostics.extend(faq_diagnostics);
    let matcher = match Matcher::build(&drafts) {
        Ok(mut matcher) => {
            matcher.set_calendar(parsed.calendar.clone());
            lint::check_examples(&drafts, &matcher, &mut diagnostics);
            lint::warnings(&drafts, &matcher, &mut diagnostics);
            Some(matcher)
        }
        Err(message) => {
            let at = drafts
                .iter()
                .find_map(|d| d.conditions.regexes.first())
                .map(|(source, _)| source.location.clone())
                .or_else(|| files.first().map(|f| Location::new(&f.path, 1, 1)))
                .unwrap_or_else(|| Location::new(dir, 1, 1));
            diagnostics.push(Diagnostic::error(at, message));
            None
        }
    };
    sort_diagnostics(&mut diagnostics);
    let refused = diagnostics.iter().any(Diagnostic::is_error);
    let set = match (refused, faq, matcher) {
        (false, Some(faq), Some(matcher)) => Some(assemble(drafts, faq, matcher, parsed.calendar)),
        _ => None,
    };
    LoadReport { set, diagnostics }
}

fn assemble(drafts: Vec<Draft>, faq: FaqIndex, matcher: Matcher, calendar: Calendar) -> RuleSet {
    let mut set = RuleSet {
        faq,
        matcher,
        calendar,
        ..RuleSet::default()
    };
    for (index, draft) in drafts.into_iter().enumerate() {
        if draft.default.is_some() {
            set.defaults.push(index);
        }
        set.by_id.entry(draft.id.clone()).or_insert(index);
        let is_default = draft.default.is_some();
        set.rules.push(Rule {
            id: draft.id,
            priority: draft.priority,
            is_default,
            default_schedule: if is_default {
                draft.conditions.schedule
            } else {
                None
            },
            misses: draft.misses,
            action: draft.action,
            location: draft.location,
        });
    }
    let rules = &set.rules;
    set.defaults
        .sort_by_key(|&i| (std::cmp::Reverse(rules.get(i).map_or(0, |r| r.priority)), i));
    set
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
