//! Checks across rules, run on every load: errors that refuse the set (duplicate ids, several
//! default rules, `faq:` naming no entry, `examples` a rule does not win) and warnings that are
//! only printed (a keyword used by two rules, a shadowed rule, a reply over 2,000 bytes, more
//! messages per hit than WeChat allows, a template naming no capture group).
//!
//! Owns: those checks and their messages, each at the position of the offending item. Must not
//! do I/O or change the drafts; it reads them and the built matcher.

use std::collections::{HashMap, HashSet};

use chrono::Utc;

use crate::diag::{Diagnostic, Location};

use super::MatchInput;
use super::compile::{Draft, ranking};
use super::matcher::{Matcher, Schedules};

/// WeChat cuts (or refuses) longer text messages.
pub const MAX_REPLY_BYTES: usize = 2000;

/// How many messages WeChat lets one user message receive.
pub const MAX_MESSAGES_PER_HIT: usize = 5;

/// Duplicate ids, several defaults, `faq:` naming no entry.
pub fn cross_rule_errors(
    drafts: &[Draft],
    faq_ids: &HashSet<String>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut ids: HashMap<&str, &Location> = HashMap::new();
    let mut defaults: Vec<&Draft> = Vec::new();
    for draft in drafts {
        if !draft.id.is_empty() {
            if let Some(first) = ids.get(draft.id.as_str()) {
                diagnostics.push(Diagnostic::error(
                    draft.id_location.clone(),
                    format!("duplicate rule id `{}` (first at {first})", draft.id),
                ));
            } else {
                ids.insert(&draft.id, &draft.id_location);
            }
        }
        if let Some(at) = &draft.default {
            let same = |d: &&&Draft| {
                d.priority == draft.priority
                    && d.misses == draft.misses
                    && d.conditions.schedule == draft.conditions.schedule
            };
            match defaults.iter().find(same) {
                Some(first) => diagnostics.push(Diagnostic::error(
                    at.clone(),
                    format!(
                        "two default rules with the same conditions and priority: `{}` (at {}) \
                         already applies whenever `{}` would; give one a different `schedule`, \
                         `misses` or `priority`",
                        first.id, first.location, draft.id
                    ),
                )),
                None => defaults.push(draft),
            }
        }
        if let Some(faq) = &draft.faq
            && !faq_ids.contains(&faq.value)
        {
            let mut known: Vec<&str> = faq_ids.iter().map(String::as_str).collect();
            known.sort_unstable();
            let hint = if known.is_empty() {
                " (no FAQ entry is defined)".to_string()
            } else if known.len() <= 8 {
                format!(" (known: {})", known.join(", "))
            } else {
                String::new()
            };
            diagnostics.push(Diagnostic::error(
                faq.location.clone(),
                format!("`faq: {}` names no FAQ entry{hint}", faq.value),
            ));
        }
    }
    if let Some(first) = defaults.first()
        && defaults
            .iter()
            .all(|d| d.misses > 0 || d.conditions.schedule.is_some())
    {
        diagnostics.push(Diagnostic::warning(
            first
                .default
                .clone()
                .unwrap_or_else(|| first.location.clone()),
            "no default rule without conditions: a message nothing answers gets no reply when \
             no default's `schedule` or `misses` holds",
        ));
    }
}

/// Every `examples` entry must be won by its rule, every `not_examples` entry must not be
/// (schedules taken as satisfied).
pub fn check_examples(drafts: &[Draft], matcher: &Matcher, diagnostics: &mut Vec<Diagnostic>) {
    let now = Utc::now().with_timezone(&chrono_tz::UTC);
    for (index, draft) in drafts.iter().enumerate() {
        if !draft.is_matchable() {
            continue;
        }
        for example in &draft.examples {
            let winner = winner_of(draft, &example.value, matcher, now);
            if winner == Some(index) {
                continue;
            }
            let by = match winner.and_then(|w| drafts.get(w)) {
                Some(other) => format!("rule `{}` (at {}) wins it", other.id, other.location),
                None => "no rule matches it".to_string(),
            };
            diagnostics.push(Diagnostic::error(
                example.location.clone(),
                format!(
                    "example \"{}\" is not won by rule `{}`: {by}",
                    example.value, draft.id
                ),
            ));
        }
        for example in &draft.not_examples {
            let winner = winner_of(draft, &example.value, matcher, now);
            if winner == Some(index) {
                diagnostics.push(Diagnostic::error(
                    example.location.clone(),
                    format!(
                        "not_example \"{}\" is won by rule `{}`",
                        example.value, draft.id
                    ),
                ));
            }
        }
    }
}

/// The index of the rule that wins `text` as a message of `draft`'s type, schedules ignored.
fn winner_of(
    draft: &Draft,
    text: &str,
    matcher: &Matcher,
    now: chrono::DateTime<chrono_tz::Tz>,
) -> Option<usize> {
    let input = MatchInput {
        msg_type: &draft.conditions.msg_type,
        event: draft.conditions.event.as_deref(),
        event_key: draft.conditions.event_keys.first().map(String::as_str),
        text,
        now,
    };
    matcher.find(&input, Schedules::Ignore).map(|f| f.index)
}

/// The warnings: shared keywords, shadowed rules, long replies, too many messages per hit,
/// templates naming no capture group.
pub fn warnings(drafts: &[Draft], matcher: &Matcher, diagnostics: &mut Vec<Diagnostic>) {
    shared_keywords(drafts, diagnostics);
    shadowed(drafts, matcher, diagnostics);
    for draft in drafts {
        replies(draft, diagnostics);
    }
}

/// A rule whose only conditions are `keywords` (plus its message type): two such rules listing
/// the same keyword compete for every message with it, and only one can win. Rules with more
/// conditions (a schedule, `not`, …) overlap on purpose and are left alone.
fn is_plain_keyword_rule(draft: &Draft) -> bool {
    let c = &draft.conditions;
    draft.is_matchable()
        && !c.keywords.is_empty()
        && c.all.is_empty()
        && c.not.is_empty()
        && c.exact.is_empty()
        && c.regexes.is_empty()
        && c.schedule.is_none()
}

fn shared_keywords(drafts: &[Draft], diagnostics: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<(&str, &str, Option<&str>), &Draft> = HashMap::new();
    for draft in drafts.iter().filter(|d| is_plain_keyword_rule(d)) {
        let c = &draft.conditions;
        let mut own: HashSet<&str> = HashSet::new();
        for keyword in &c.keywords {
            if !own.insert(&keyword.value) {
                diagnostics.push(Diagnostic::warning(
                    keyword.location.clone(),
                    format!("keyword \"{}\" is listed twice in this rule", keyword.value),
                ));
                continue;
            }
            let key = (
                keyword.value.as_str(),
                c.msg_type.as_str(),
                c.event.as_deref(),
            );
            match seen.get(&key) {
                Some(first) => diagnostics.push(Diagnostic::warning(
                    keyword.location.clone(),
                    format!(
                        "keyword \"{}\" is also used by rule `{}` (at {}); only one of them can \
                         win a message with it",
                        keyword.value, first.id, first.location
                    ),
                )),
                None => {
                    seen.insert(key, draft);
                }
            }
        }
    }
}

/// Can `a` match every message of `b`'s type? (Same type; `a` names no event or the same one.)
fn covers_type(a: &Draft, b: &Draft) -> bool {
    let (ka, kb) = (&a.conditions.event_keys, &b.conditions.event_keys);
    a.conditions.msg_type == b.conditions.msg_type
        && (a.conditions.event.is_none() || a.conditions.event == b.conditions.event)
        && (ka.is_empty() || (!kb.is_empty() && kb.iter().all(|k| ka.contains(k))))
}

/// A sound, cheap shadowing check. Rule A (ranked above B, no schedule, no `not`) shadows B when
/// every message B can match is matched by A:
/// - A has no text condition: it matches every message of its type;
/// - A has only `keywords`: B's every way to match contains one of A's keywords (each of B's
///   exact values, or one of B's `all` keywords, or each of B's `keywords`);
/// - A has only `exact`: B's exact values are all among A's.
///
/// Found through the keyword automaton (which keywords occur inside each of B's words), so the
/// cost grows with the size of the rules, not with their number squared.
fn shadowed(drafts: &[Draft], matcher: &Matcher, diagnostics: &mut Vec<Diagnostic>) {
    let order = ranking(drafts);
    let mut rank_of: Vec<Option<usize>> = vec![None; drafts.len()];
    for (rank, &index) in order.iter().enumerate() {
        if let Some(slot) = rank_of.get_mut(index) {
            *slot = Some(rank);
        }
    }
    // Shadowing candidates, each list in rank order.
    let mut by_keyword: HashMap<u32, Vec<(usize, usize)>> = HashMap::new();
    let mut by_exact: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    let mut textless: Vec<(usize, usize)> = Vec::new();
    for (rank, &index) in order.iter().enumerate() {
        let Some(a) = drafts.get(index) else { continue };
        let c = &a.conditions;
        if c.schedule.is_some() || !c.not.is_empty() {
            continue;
        }
        let only = |keywords: bool, exact: bool| {
            (c.keywords.is_empty() != keywords)
                && (c.exact.is_empty() != exact)
                && c.all.is_empty()
                && c.regexes.is_empty()
        };
        if only(false, false) {
            textless.push((rank, index));
        } else if only(true, false) {
            for keyword in &c.keywords {
                if let Some(id) = matcher.pattern_id(&keyword.value) {
                    let list = by_keyword.entry(id).or_default();
                    if list.last() != Some(&(rank, index)) {
                        list.push((rank, index));
                    }
                }
            }
        } else if only(false, true) {
            for value in &c.exact {
                by_exact
                    .entry(&value.value)
                    .or_default()
                    .push((rank, index));
            }
        }
    }

    for (rank, &index) in order.iter().enumerate() {
        let Some(b) = drafts.get(index) else { continue };
        let above = |list: &[(usize, usize)]| -> Option<usize> {
            list.iter()
                .take_while(|(r, _)| *r < rank)
                .find(|(_, a)| drafts.get(*a).is_some_and(|a| covers_type(a, b)))
                .map(|(_, a)| *a)
        };
        let by_word = |word: &str| -> Option<usize> {
            matcher
                .patterns_in(word)
                .into_iter()
                .filter_map(|id| by_keyword.get(&id).and_then(|list| above(list)))
                .min_by_key(|a| rank_of.get(*a).copied().flatten())
        };
        let c = &b.conditions;
        let shadow = above(&textless).or_else(|| {
            if !c.exact.is_empty() {
                let covers: Option<Vec<usize>> = c
                    .exact
                    .iter()
                    .map(|e| {
                        by_word(&e.value)
                            .or_else(|| by_exact.get(e.value.as_str()).and_then(|l| above(l)))
                    })
                    .collect();
                covers.and_then(|a| a.first().copied())
            } else if !c.all.is_empty() {
                c.all.iter().find_map(|k| by_word(&k.value))
            } else if !c.keywords.is_empty() {
                let covers: Option<Vec<usize>> =
                    c.keywords.iter().map(|k| by_word(&k.value)).collect();
                covers.and_then(|a| a.first().copied())
            } else {
                None
            }
        });
        if let Some(a) = shadow.and_then(|a| drafts.get(a)) {
            diagnostics.push(Diagnostic::warning(
                b.location.clone(),
                format!(
                    "rule `{}` can never win: rule `{}` (at {}) ranks above it and matches every \
                     message it matches",
                    b.id, a.id, a.location
                ),
            ));
        }
    }
}

/// Reply length, messages per hit, template placeholders.
fn replies(draft: &Draft, diagnostics: &mut Vec<Diagnostic>) {
    for (reply, location) in draft.action.replies.iter().zip(&draft.reply_locations) {
        if reply.len() > MAX_REPLY_BYTES {
            diagnostics.push(Diagnostic::warning(
                location.clone(),
                format!(
                    "reply is {} bytes; WeChat takes at most {MAX_REPLY_BYTES} in one text message",
                    reply.len()
                ),
            ));
        }
    }
    let texts = if draft.action.reply_all {
        draft.action.replies.len()
    } else {
        usize::from(!draft.action.replies.is_empty())
    };
    let messages = texts + draft.action.media.len() + usize::from(draft.action.faq.is_some());
    if messages > MAX_MESSAGES_PER_HIT {
        diagnostics.push(Diagnostic::warning(
            draft.location.clone(),
            format!(
                "one hit of rule `{}` sends {messages} messages; WeChat lets one user message \
                 receive at most {MAX_MESSAGES_PER_HIT}",
                draft.id
            ),
        ));
    }
    placeholder_errors(draft, diagnostics);
}

/// A `{name}` or `{N}` placeholder is filled from the capture of the regex that matched, so it
/// must be a capture group of every regex of the rule; a rule without regex fills none. Anything
/// else would reach users as written: an error at load.
pub fn placeholder_errors(draft: &Draft, diagnostics: &mut Vec<Diagnostic>) {
    // Per regex, the group names and numbers it has.
    let groups: Vec<(&str, HashSet<String>)> = draft
        .conditions
        .regexes
        .iter()
        .map(|(source, regex)| {
            let mut names = HashSet::new();
            for (i, name) in regex.capture_names().enumerate() {
                names.insert(i.to_string());
                if let Some(name) = name {
                    names.insert(name.to_string());
                }
            }
            (source.value.as_str(), names)
        })
        .collect();
    let mut templates: Vec<(String, &crate::diag::Location)> = draft
        .action
        .replies
        .iter()
        .cloned()
        .zip(&draft.reply_locations)
        .collect();
    match &draft.action.fetch {
        Some(fetch) => {
            // `${VAR}` is the environment's, not a capture.
            let url =
                super::fetch::expand_env(&fetch.url, &|_| Some(String::new())).unwrap_or_default();
            templates.push((url, &draft.location));
            templates.push((fetch.fallback.clone(), &draft.location));
            if let Some(field) = super::fetch::fetch_fields(&fetch.fallback).first() {
                diagnostics.push(Diagnostic::error(
                    draft.location.clone(),
                    format!(
                        "`{{fetch.{field}}}` in `fallback` can never be filled: the fallback is \
                         sent when the backend did not answer"
                    ),
                ));
            }
        }
        None => {
            for (reply, location) in draft.action.replies.iter().zip(&draft.reply_locations) {
                if let Some(field) = super::fetch::fetch_fields(reply).first() {
                    diagnostics.push(Diagnostic::error(
                        location.clone(),
                        format!(
                            "`{{fetch.{field}}}` cannot be filled: rule `{}` has no `fetch`",
                            draft.id
                        ),
                    ));
                }
            }
        }
    }
    for (reply, location) in &templates {
        let reply = reply.as_str();
        for name in placeholders(reply) {
            let message = if groups.is_empty() {
                Some(format!(
                    "`{{{name}}}` cannot be filled: rule `{}` has no regex, so it has no \
                     captures (a placeholder would reach users as written)",
                    draft.id
                ))
            } else {
                groups
                    .iter()
                    .find(|(_, names)| !names.contains(name))
                    .map(|(pattern, _)| {
                        format!(
                            "`{{{name}}}` cannot be filled when the regex `{pattern}` matches: it \
                             has no such capture group (a placeholder would reach users as \
                             written)"
                        )
                    })
            };
            if let Some(message) = message {
                diagnostics.push(Diagnostic::error((*location).clone(), message));
            }
        }
    }
}

/// `{name}` and `{1}` placeholders in a template (names: letters, digits, `_`).
fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = rest.get(open + 1..).unwrap_or("");
        match after.find('}') {
            Some(close) => {
                let name = after.get(..close).unwrap_or("");
                if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    out.push(name);
                }
                rest = after.get(close + 1..).unwrap_or("");
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_found() {
        assert_eq!(
            placeholders("订单 {order} / {1} {} {a b} {"),
            ["order", "1"]
        );
    }
}
