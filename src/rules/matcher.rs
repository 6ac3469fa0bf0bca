//! The matcher: every rule's conditions compiled into shared indexes, so that deciding a message
//! costs about the same with ten rules as with a hundred thousand.
//!
//! - all keywords of all rules (`keywords`, `all`, `not`) in ONE Aho-Corasick automaton, run once
//!   per message with overlapping matches;
//! - all `exact` values in ONE hash map;
//! - every regex compiled on its own, once, at load. A regex whose every match starts with one of
//!   a few literals (`订单号?\s*(\d+)` starts with 订单) is found through those literals in the
//!   same automaton and only then run alone; the regexes without such literals go into ONE
//!   `RegexSet`, run once per message. (A `RegexSet` of every regex would grow with their
//!   number: 1,000 regexes took ~400 µs a message; see benches/rules.rs.)
//! - rules without a text condition indexed by message type.
//!
//! Each rule is registered under one necessary condition (its trigger). A message's hits give
//! the candidate rules; each candidate's full conditions are checked in rank order (priority
//! desc, then load order) and the first that holds wins. Owns: that index and that decision.
//! Must not do I/O, read the clock (the caller passes `now`) or compile anything per message.

use std::borrow::Cow;
use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::{Regex, RegexSet, RegexSetBuilder, SetMatches};
use regex_syntax::hir::literal::{ExtractKind, Extractor};

use super::compile::{Draft, REGEX_SET_SIZE_LIMIT, REGEX_SIZE_LIMIT, ranking};
use super::schedule::{Calendar, Schedule};
use super::{Captures, MatchInput};

/// Whether schedules are checked (serving) or taken as satisfied (checking `examples`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedules {
    Respect,
    Ignore,
}

/// A rule's conditions, as ids into the shared indexes.
#[derive(Debug)]
struct CompiledRule {
    /// Keyword pattern ids: any one must appear (empty: no such condition).
    any: Box<[u32]>,
    /// Keyword pattern ids: every one must appear.
    all: Box<[u32]>,
    /// Keyword pattern ids: none may appear.
    none: Box<[u32]>,
    /// The whole text must equal one (empty: no such condition).
    exact: Box<[Box<str>]>,
    /// Regex ids (into the set and `regexes`): any one must match (empty: no such condition).
    regexes: Box<[u32]>,
    /// Lower case.
    msg_type: Box<str>,
    /// Lower case, for `event` rules.
    event: Option<Box<str>>,
    /// `event_key`: any one equals the event's key (empty: no such condition).
    event_keys: Box<[Box<str>]>,
    /// When the rule applies.
    schedule: Option<Schedule>,
}

/// One keyword occurrence: the first one of each pattern in the message.
#[derive(Debug, Clone, Copy)]
struct Hit {
    pattern: u32,
    start: usize,
    end: usize,
}

/// The winner of a message. Cheap: the explanation of why it won ([`Matcher::explain`]) and
/// its regex's captures ([`Matcher::captures`]) are computed only on request, as the regex
/// crate's `is_match` / `captures` let a caller pay only for what it asks.
#[derive(Debug, Clone)]
pub struct Found {
    /// Index of the rule, in load order.
    pub index: usize,
    /// Every keyword found in the text, by pattern id (sorted, one per pattern).
    hits: Vec<Hit>,
}

/// The compiled index of all rules. Immutable once built; `Send + Sync`.
#[derive(Debug, Default)]
pub struct Matcher {
    /// Every distinct keyword, normalized; pattern id = index.
    patterns: Vec<Box<str>>,
    /// The one automaton over `patterns` (`None` when there is no keyword).
    automaton: Option<AhoCorasick>,
    /// Pattern id → ranks of the rules it triggers.
    keyword_triggers: Vec<Box<[u32]>>,
    /// Exact value → ranks of the rules it triggers.
    exact: HashMap<Box<str>, Box<[u32]>>,
    /// The one set of the regexes without literals to find them by (`None` when there is none).
    regex_set: Option<RegexSet>,
    /// Set index → ranks of the rules it triggers.
    regex_triggers: Vec<Box<[u32]>>,
    /// Regex id → the regex compiled alone: run on candidates, and for the winner's captures.
    regexes: Vec<Regex>,
    /// Regex id → its index in `regex_set`, for the regexes that are in it.
    in_set: Vec<Option<u32>>,
    /// Message type → ranks of the rules without a text condition.
    textless: HashMap<Box<str>, Box<[u32]>>,
    /// Rank → rule index.
    order: Box<[u32]>,
    /// Rule index → compiled conditions (`None`: never matched, e.g. the default rule).
    rules: Vec<Option<CompiledRule>>,
    /// Holidays and working days for `workday`/`offday` schedules.
    calendar: Calendar,
}

/// Where a rule is registered: one necessary condition, the most selective it has.
enum Trigger {
    Exact,
    Keywords,
    /// The longest of its `all` keywords (likely the rarest).
    All(u32),
    Regex,
    Textless,
}

/// Literals that every match of `pattern` starts with, lower case, for the automaton; `None` when
/// there are none to rely on (the regex then goes into the `RegexSet`).
///
/// The pattern is parsed as it is compiled (case-insensitive); its prefix literals come from
/// regex-syntax's extractor. Variants with a character that lower-casing changes are dropped:
/// normalized text never contains one, so they can never occur.
pub fn prefix_literals(pattern: &str) -> Option<Vec<String>> {
    /// More literals than this make a poor filter.
    const MAX_LITERALS: usize = 64;
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(true)
        .build()
        .parse(pattern)
        .ok()?;
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let mut out: Vec<String> = Vec::new();
    for literal in seq.literals()? {
        let bytes = literal.as_bytes();
        // A literal cut by the extractor's length limit may end inside a character: keep the
        // whole characters, still a prefix of every match it stands for.
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => std::str::from_utf8(bytes.get(..e.valid_up_to())?).ok()?,
        };
        if text.is_empty() {
            return None;
        }
        if text
            .chars()
            .all(|c| c.to_lowercase().eq(std::iter::once(c)))
        {
            out.push(text.to_string());
        }
    }
    out.sort_unstable();
    out.dedup();
    // A text that contains `订单号` contains `订单`: the longer literal finds nothing more.
    let all = out.clone();
    out.retain(|lit| {
        !all.iter()
            .any(|other| other != lit && lit.contains(other.as_str()))
    });
    if out.is_empty() || out.len() > MAX_LITERALS {
        return None;
    }
    Some(out)
}

fn u32_of(n: usize) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| "too many rules or keywords (over 4 billion)".to_string())
}

impl Matcher {
    /// Builds the indexes over the matchable drafts (see [`Draft::is_matchable`]).
    /// Uses `calendar` for `workday`/`offday` schedules.
    pub fn set_calendar(&mut self, calendar: Calendar) {
        self.calendar = calendar;
    }

    pub fn build(drafts: &[Draft]) -> Result<Matcher, String> {
        let order = ranking(drafts);
        let mut m = Matcher {
            rules: (0..drafts.len()).map(|_| None).collect(),
            ..Matcher::default()
        };
        let mut pattern_ids: HashMap<String, u32> = HashMap::new();
        let mut keyword_triggers: Vec<Vec<u32>> = Vec::new();
        let mut exact: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut regex_sources: Vec<&str> = Vec::new();
        let mut regex_triggers: Vec<Vec<u32>> = Vec::new();
        let mut textless: HashMap<Box<str>, Vec<u32>> = HashMap::new();

        let mut intern = |word: &str, triggers: &mut Vec<Vec<u32>>| -> Result<u32, String> {
            if let Some(&id) = pattern_ids.get(word) {
                return Ok(id);
            }
            let id = u32_of(pattern_ids.len())?;
            pattern_ids.insert(word.to_string(), id);
            triggers.push(Vec::new());
            Ok(id)
        };

        for (rank, &index) in order.iter().enumerate() {
            let rank = u32_of(rank)?;
            let Some(draft) = drafts.get(index) else {
                continue;
            };
            let c = &draft.conditions;
            let mut ids = |words: &[crate::diag::Located<String>]| -> Result<Box<[u32]>, String> {
                let mut out = Vec::with_capacity(words.len());
                for w in words {
                    let id = intern(&w.value, &mut keyword_triggers)?;
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
                Ok(out.into_boxed_slice())
            };
            let any = ids(&c.keywords)?;
            let all = ids(&c.all)?;
            let none = ids(&c.not)?;
            let mut regex_ids = Vec::with_capacity(c.regexes.len());
            // Per regex: the literal pattern ids that find it, or `None` for a regex in the set.
            let mut regex_finders: Vec<Option<Vec<u32>>> = Vec::with_capacity(c.regexes.len());
            for (source, regex) in &c.regexes {
                regex_ids.push(u32_of(m.regexes.len())?);
                m.regexes.push(regex.clone());
                match prefix_literals(&source.value) {
                    Some(literals) => {
                        let mut ids = Vec::with_capacity(literals.len());
                        for literal in &literals {
                            ids.push(intern(literal, &mut keyword_triggers)?);
                        }
                        m.in_set.push(None);
                        regex_finders.push(Some(ids));
                    }
                    None => {
                        m.in_set.push(Some(u32_of(regex_sources.len())?));
                        regex_sources.push(&source.value);
                        regex_triggers.push(Vec::new());
                        regex_finders.push(None);
                    }
                }
            }
            let exact_values: Box<[Box<str>]> = c
                .exact
                .iter()
                .map(|e| Box::from(e.value.as_str()))
                .collect();

            let longest_all = all
                .iter()
                .zip(&c.all)
                .max_by_key(|(_, w)| w.value.len())
                .map(|(&id, _)| id);
            let trigger = if !exact_values.is_empty() {
                Trigger::Exact
            } else if !any.is_empty() {
                Trigger::Keywords
            } else if let Some(id) = longest_all {
                Trigger::All(id)
            } else if !regex_ids.is_empty() {
                Trigger::Regex
            } else {
                Trigger::Textless
            };
            match trigger {
                Trigger::Exact => {
                    for value in exact_values.iter() {
                        let ranks = exact.entry(value.clone()).or_default();
                        if ranks.last() != Some(&rank) {
                            ranks.push(rank);
                        }
                    }
                }
                Trigger::Keywords => {
                    for &id in any.iter() {
                        if let Some(t) = keyword_triggers.get_mut(id as usize) {
                            t.push(rank);
                        }
                    }
                }
                Trigger::All(id) => {
                    if let Some(t) = keyword_triggers.get_mut(id as usize) {
                        t.push(rank);
                    }
                }
                Trigger::Regex => {
                    for (&id, finders) in regex_ids.iter().zip(&regex_finders) {
                        match finders {
                            Some(literals) => {
                                for &literal in literals {
                                    if let Some(t) = keyword_triggers.get_mut(literal as usize)
                                        && t.last() != Some(&rank)
                                    {
                                        t.push(rank);
                                    }
                                }
                            }
                            None => {
                                let set_index = m.in_set.get(id as usize).copied().flatten();
                                if let Some(t) =
                                    set_index.and_then(|i| regex_triggers.get_mut(i as usize))
                                {
                                    t.push(rank);
                                }
                            }
                        }
                    }
                }
                Trigger::Textless => {
                    textless
                        .entry(Box::from(c.msg_type.as_str()))
                        .or_default()
                        .push(rank);
                }
            }
            if let Some(slot) = m.rules.get_mut(index) {
                *slot = Some(CompiledRule {
                    any,
                    all,
                    none,
                    exact: exact_values,
                    regexes: regex_ids.into_boxed_slice(),
                    msg_type: Box::from(c.msg_type.as_str()),
                    event: c.event.as_deref().map(Box::from),
                    event_keys: c.event_keys.iter().map(|k| Box::from(k.as_str())).collect(),
                    schedule: c.schedule,
                });
            }
        }

        let mut patterns: Vec<(u32, String)> =
            pattern_ids.into_iter().map(|(w, id)| (id, w)).collect();
        patterns.sort_unstable_by_key(|(id, _)| *id);
        m.patterns = patterns.into_iter().map(|(_, w)| w.into()).collect();
        if !m.patterns.is_empty() {
            let automaton = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(m.patterns.iter().map(|p| p.as_bytes()))
                .map_err(|e| format!("cannot build the keyword automaton: {e}"))?;
            m.automaton = Some(automaton);
        }
        if !regex_sources.is_empty() {
            let set = RegexSetBuilder::new(&regex_sources)
                .case_insensitive(true)
                .size_limit(REGEX_SET_SIZE_LIMIT.max(REGEX_SIZE_LIMIT))
                .build()
                .map_err(|e| match e {
                    regex::Error::CompiledTooBig(limit) => format!(
                        "all regexes together are over the size limit ({limit} bytes once \
                         compiled); use fewer or simpler regexes"
                    ),
                    other => super::compile::regex_error(&other),
                })?;
            m.regex_set = Some(set);
        }
        m.keyword_triggers = keyword_triggers
            .into_iter()
            .map(Vec::into_boxed_slice)
            .collect();
        m.regex_triggers = regex_triggers
            .into_iter()
            .map(Vec::into_boxed_slice)
            .collect();
        m.exact = exact
            .into_iter()
            .map(|(k, v)| (k, v.into_boxed_slice()))
            .collect();
        m.textless = textless
            .into_iter()
            .map(|(k, v)| (k, v.into_boxed_slice()))
            .collect();
        m.order = order
            .iter()
            .map(|&i| u32_of(i))
            .collect::<Result<Vec<u32>, String>>()?
            .into_boxed_slice();
        Ok(m)
    }

    /// The pattern id of a normalized keyword.
    pub fn pattern_id(&self, word: &str) -> Option<u32> {
        // Only used by the lints, at load: a linear scan would be quadratic there, so go
        // through the automaton, which finds the word inside itself.
        self.patterns_in(word)
            .into_iter()
            .find(|&id| self.patterns.get(id as usize).is_some_and(|p| &**p == word))
    }

    /// Ids of every keyword that occurs in `text` (each once).
    pub fn patterns_in(&self, text: &str) -> Vec<u32> {
        let Some(automaton) = &self.automaton else {
            return Vec::new();
        };
        let mut ids: Vec<u32> = automaton
            .find_overlapping_iter(text)
            .map(|m| m.pattern().as_u32())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The winner for a message, if any rule holds.
    pub fn find(&self, input: &MatchInput<'_>, schedules: Schedules) -> Option<Found> {
        let text = input.text;
        // Room for a few of each from the start: growing from empty reallocated twice per push.
        let mut hits: Vec<Hit> = Vec::with_capacity(4);
        let mut candidates: Vec<u32> = Vec::with_capacity(8);
        let mut regex_hits: Option<SetMatches> = None;
        if !text.is_empty() {
            if let Some(automaton) = &self.automaton {
                hits.extend(automaton.find_overlapping_iter(text).map(|m| Hit {
                    pattern: m.pattern().as_u32(),
                    start: m.start(),
                    end: m.end(),
                }));
                hits.sort_unstable_by_key(|h| (h.pattern, h.start));
                hits.dedup_by_key(|h| h.pattern);
                for hit in &hits {
                    if let Some(ranks) = self.keyword_triggers.get(hit.pattern as usize) {
                        candidates.extend_from_slice(ranks);
                    }
                }
            }
            if let Some(ranks) = self.exact.get(text) {
                candidates.extend_from_slice(ranks);
            }
            if let Some(set) = &self.regex_set {
                let matched = set.matches(text);
                for id in matched.iter() {
                    if let Some(ranks) = self.regex_triggers.get(id) {
                        candidates.extend_from_slice(ranks);
                    }
                }
                regex_hits = Some(matched);
            }
        }
        let msg_type: Cow<'_, str> = if input.msg_type.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(input.msg_type.to_ascii_lowercase())
        } else {
            Cow::Borrowed(input.msg_type)
        };
        if let Some(ranks) = self.textless.get(msg_type.as_ref()) {
            candidates.extend_from_slice(ranks);
        }
        candidates.sort_unstable();
        candidates.dedup();

        for rank in candidates {
            let Some(&index) = self.order.get(rank as usize) else {
                continue;
            };
            let index = index as usize;
            let Some(Some(rule)) = self.rules.get(index) else {
                continue;
            };
            if self.holds(
                rule,
                input,
                &msg_type,
                &hits,
                regex_hits.as_ref(),
                schedules,
            ) {
                return Some(Found { index, hits });
            }
        }
        None
    }

    fn holds(
        &self,
        rule: &CompiledRule,
        input: &MatchInput<'_>,
        msg_type: &str,
        hits: &[Hit],
        regex_hits: Option<&SetMatches>,
        schedules: Schedules,
    ) -> bool {
        let has = |id: &u32| hits.binary_search_by_key(id, |h| h.pattern).is_ok();
        if *rule.msg_type != *msg_type {
            return false;
        }
        if let Some(event) = &rule.event {
            match input.event {
                Some(e) if e.trim().eq_ignore_ascii_case(event) => {}
                _ => return false,
            }
        }
        if !rule.event_keys.is_empty()
            && !input
                .event_key
                .is_some_and(|key| rule.event_keys.iter().any(|k| **k == *key.trim()))
        {
            return false;
        }
        if schedules == Schedules::Respect
            && let Some(schedule) = &rule.schedule
            && !schedule.holds_in(&input.now, &self.calendar)
        {
            return false;
        }
        if !rule.any.is_empty() && !rule.any.iter().any(has) {
            return false;
        }
        if !rule.all.iter().all(has) || rule.none.iter().any(has) {
            return false;
        }
        if !rule.exact.is_empty() && !rule.exact.iter().any(|e| **e == *input.text) {
            return false;
        }
        if !rule.regexes.is_empty()
            && !rule
                .regexes
                .iter()
                .any(|&id| self.regex_matches(id, input.text, regex_hits))
        {
            return false;
        }
        true
    }

    /// Does regex `id` match? From the set's result when it is in the set, else run alone.
    fn regex_matches(&self, id: u32, text: &str, regex_hits: Option<&SetMatches>) -> bool {
        match self.in_set.get(id as usize).copied().flatten() {
            Some(set_index) => regex_hits.is_some_and(|m| m.matched(set_index as usize)),
            None => self
                .regexes
                .get(id as usize)
                .is_some_and(|r| r.is_match(text)),
        }
    }

    /// The captures of the winner's first matching regex in `text` (the text it was found in),
    /// by number and by name; empty when the rule has no regex. Runs the capturing engine, which
    /// costs more than the match itself: asked for only when a reply uses captures.
    pub fn captures(&self, found: &Found, text: &str) -> Captures {
        let mut captures = Captures::new();
        let Some(Some(rule)) = self.rules.get(found.index) else {
            return captures;
        };
        let first = rule
            .regexes
            .iter()
            .filter_map(|&id| self.regexes.get(id as usize))
            .find_map(|regex| regex.captures(text).map(|caps| (regex, caps)));
        if let Some((regex, caps)) = first {
            for (i, name) in regex.capture_names().enumerate() {
                let value = caps.get(i).map_or("", |m| m.as_str()).to_string();
                if let Some(name) = name {
                    captures.insert(name.to_string(), value.clone());
                }
                captures.insert(i.to_string(), value);
            }
        }
        captures
    }

    /// Which conditions of the winner matched where (character offsets), without the rule id:
    /// for `kefu try`, `kefu eval` and the console, never on the request path.
    pub fn explain(&self, found: &Found, input: &MatchInput<'_>) -> String {
        let Some(Some(rule)) = self.rules.get(found.index) else {
            return String::new();
        };
        let text = input.text;
        let hits = &found.hits;
        let hit = |id: &u32| {
            hits.binary_search_by_key(id, |h| h.pattern)
                .ok()
                .and_then(|i| hits.get(i))
        };
        let word = |id: u32| self.patterns.get(id as usize).map_or("?", |p| &**p);
        let mut parts: Vec<String> = Vec::new();
        if *rule.msg_type != *"text" {
            parts.push(format!("msg_type {}", rule.msg_type));
        }
        if let Some(event) = &rule.event {
            parts.push(format!("event {event}"));
        }
        if !rule.event_keys.is_empty()
            && let Some(key) = input.event_key
        {
            parts.push(format!("event_key {}", key.trim()));
        }
        for (label, ids, only_hits) in [("keyword", &rule.any, true), ("all", &rule.all, false)] {
            let matched: Vec<(u32, Hit)> = ids
                .iter()
                .filter_map(|id| hit(id).map(|h| (*id, *h)))
                .collect();
            if matched.is_empty() || (!only_hits && matched.len() != ids.len()) {
                continue;
            }
            let words: Vec<&str> = matched.iter().map(|(id, _)| word(*id)).collect();
            let spans: Vec<String> = matched
                .iter()
                .map(|(_, h)| char_span(text, h.start, h.end))
                .collect();
            parts.push(format!(
                "{label} {} at chars {}",
                words.join(" + "),
                spans.join(", ")
            ));
        }
        if !rule.exact.is_empty() {
            parts.push(format!("exact {text}"));
        }
        let winner = rule
            .regexes
            .iter()
            .filter_map(|&id| self.regexes.get(id as usize))
            .find(|r| r.is_match(text));
        if let Some(regex) = winner
            && let Some(m) = regex.find(text)
        {
            let span = char_span(text, m.start(), m.end());
            parts.push(format!("regex {} at chars {span}", shorten(regex.as_str())));
        }
        if let Some(schedule) = &rule.schedule {
            parts.push(format!("schedule {schedule}"));
        }
        if parts.is_empty() {
            let not: Vec<&str> = rule.none.iter().map(|&id| word(id)).collect();
            if not.is_empty() {
                parts.push(format!("none of {}", not.join(", ")));
            } else {
                parts.push(format!("any {} message", rule.msg_type));
            }
        }
        parts.join(", ")
    }
}

/// `start..end` in characters for a byte range of `text`.
fn char_span(text: &str, start: usize, end: usize) -> String {
    let before = text.get(..start).map_or(0, |t| t.chars().count());
    let inside = text.get(start..end).map_or(0, |t| t.chars().count());
    format!("{before}..{}", before + inside)
}

/// A regex as shown in `why`: at most 40 characters.
fn shorten(pattern: &str) -> String {
    if pattern.chars().count() <= 40 {
        pattern.to_string()
    } else {
        let head: String = pattern.chars().take(39).collect();
        format!("{head}…")
    }
}
