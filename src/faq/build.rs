//! Validation of the FAQ data an operator wrote: every problem becomes a [`Diagnostic`] at the
//! place it was written, and what survives is normalized (with [`crate::text::normalize`], the
//! function messages go through) for the matcher to compile.
//!
//! Knows the YAML model and diagnostics; nothing of scoring.

use std::collections::HashMap;

use crate::diag::{Diagnostic, Location};
use crate::text::normalize;

use super::FaqSource;

/// A clarify menu offers at most this many entries (a user answers `1`, `2` or `3`).
pub const MAX_OPTIONS: usize = 3;

/// WeChat refuses a text message longer than this many bytes.
pub const MAX_ANSWER_BYTES: usize = 2000;

/// One entry, checked; texts used for matching are normalized.
#[derive(Debug, Clone)]
pub(crate) struct CheckedEntry {
    /// As written (ids are compared exactly).
    pub id: String,
    /// As written, for menus.
    pub question: String,
    /// As written, sent to the user.
    pub answer: String,
    /// Where the entry starts.
    pub location: crate::diag::Location,
    /// The question then each `similar` phrasing, normalized.
    pub phrasings: Vec<String>,
    /// Normalized keywords.
    pub keywords: Vec<String>,
}

/// One synonym group, checked: normalized canonical word and variants. An empty canonical word
/// makes the variants filler words, dropped before synonyms are replaced.
#[derive(Debug, Clone)]
pub(crate) struct CheckedSynonyms {
    /// The first word of the group.
    pub canonical: String,
    /// The other words.
    pub variants: Vec<String>,
}

/// One clarify topic, checked; ids resolved to entry indices.
#[derive(Debug, Clone)]
pub(crate) struct CheckedTopic {
    /// For `why` lines.
    pub id: String,
    /// Where the topic is defined.
    pub location: Location,
    /// Normalized `when` words.
    pub when: Vec<String>,
    /// Normalized `not` words.
    pub not: Vec<String>,
    /// Normalized `unless` words.
    pub unless: Vec<String>,
    /// Indices of the topic's entries.
    pub entries: Vec<usize>,
    /// Indices of the menu's entries, in order.
    pub options: Vec<usize>,
    /// Normalized `kinds` words.
    pub kinds: Vec<String>,
}

/// Everything that passed the checks, and every problem found.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    pub entries: Vec<CheckedEntry>,
    pub synonyms: Vec<CheckedSynonyms>,
    pub topics: Vec<CheckedTopic>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub(crate) fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Checks the source. Errors: duplicate or empty ids, empty question, answer, phrasing, keyword
/// or synonym word, empty synonym group, a word in two synonym groups, clarify topics without
/// `when` words or options, with more than [`MAX_OPTIONS`] options or naming unknown entries.
/// Warnings: answers over [`MAX_ANSWER_BYTES`], repeated phrasings, one-word synonym groups.
pub(crate) fn check(source: FaqSource) -> Checked {
    let mut out = Checked::default();
    check_entries(source.entries, &mut out);
    check_synonyms(source.synonyms, &mut out);
    check_topics(source.clarify, &mut out);
    out
}

fn check_entries(
    entries: Vec<crate::diag::Located<super::model::FaqEntrySpec>>,
    out: &mut Checked,
) {
    let mut seen_ids: HashMap<String, Location> = HashMap::new();
    // normalized phrasing → (entry id, where) to warn about a phrasing two entries share
    let mut seen_phrasings: HashMap<String, String> = HashMap::new();
    for located in entries {
        let loc = located.location;
        let spec = located.value;
        let mut ok = true;
        if spec.id.trim().is_empty() {
            out.diagnostics.push(Diagnostic::error(
                loc.clone(),
                "FAQ entry with an empty `id`",
            ));
            ok = false;
        } else if let Some(first) = seen_ids.get(&spec.id) {
            out.diagnostics.push(Diagnostic::error(
                loc.clone(),
                format!("duplicate FAQ id `{}` (first defined at {first})", spec.id),
            ));
            ok = false;
        } else {
            seen_ids.insert(spec.id.clone(), loc.clone());
        }
        let question = normalize(&spec.question);
        if question.is_empty() {
            out.diagnostics.push(Diagnostic::error(
                loc.clone(),
                format!("FAQ entry `{}`: empty `question`", spec.id),
            ));
            ok = false;
        }
        if spec.answer.trim().is_empty() {
            out.diagnostics.push(Diagnostic::error(
                loc.clone(),
                format!("FAQ entry `{}`: empty `answer`", spec.id),
            ));
            ok = false;
        } else if spec.answer.trim().len() > MAX_ANSWER_BYTES {
            out.diagnostics.push(Diagnostic::warning(
                loc.clone(),
                format!(
                    "FAQ entry `{}`: answer is {} bytes, over the {MAX_ANSWER_BYTES} WeChat accepts in one text",
                    spec.id,
                    spec.answer.trim().len()
                ),
            ));
        }
        let mut phrasings = vec![question];
        for similar in &spec.similar {
            let p = normalize(similar);
            if p.is_empty() {
                out.diagnostics.push(Diagnostic::error(
                    loc.clone(),
                    format!("FAQ entry `{}`: empty phrasing in `similar`", spec.id),
                ));
                ok = false;
            } else if phrasings.contains(&p) {
                out.diagnostics.push(Diagnostic::warning(
                    loc.clone(),
                    format!(
                        "FAQ entry `{}`: phrasing `{similar}` is given twice",
                        spec.id
                    ),
                ));
            } else {
                phrasings.push(p);
            }
        }
        for p in &phrasings {
            match seen_phrasings.get(p) {
                Some(other) if *other != spec.id => out.diagnostics.push(Diagnostic::warning(
                    loc.clone(),
                    format!(
                        "FAQ entry `{}`: phrasing `{p}` is also one of entry `{other}`; the two will tie",
                        spec.id
                    ),
                )),
                Some(_) => {}
                None => {
                    seen_phrasings.insert(p.clone(), spec.id.clone());
                }
            }
        }
        let mut keywords = Vec::new();
        for keyword in &spec.keywords {
            let k = normalize(keyword);
            if k.is_empty() {
                out.diagnostics.push(Diagnostic::error(
                    loc.clone(),
                    format!("FAQ entry `{}`: empty keyword", spec.id),
                ));
                ok = false;
            } else if !keywords.contains(&k) {
                keywords.push(k);
            }
        }
        if ok {
            out.entries.push(CheckedEntry {
                id: spec.id,
                question: spec.question.trim().to_string(),
                answer: spec.answer.trim().to_string(),
                location: loc,
                phrasings: phrasings.into_iter().filter(|p| !p.is_empty()).collect(),
                keywords,
            });
        }
    }
}

fn check_synonyms(
    groups: Vec<crate::diag::Located<super::model::SynonymGroupSpec>>,
    out: &mut Checked,
) {
    // word → (canonical of its group, where the group is)
    let mut owner: HashMap<String, (String, Location)> = HashMap::new();
    for located in groups {
        let loc = located.location;
        let words = located.value.0;
        if words.is_empty() {
            out.diagnostics
                .push(Diagnostic::error(loc, "empty synonym group"));
            continue;
        }
        // An empty first word makes a group of filler words, removed from every text.
        let canonical = normalize(words.first().map_or("", String::as_str));
        let mut normalized: Vec<String> = vec![canonical.clone()];
        let mut ok = true;
        for word in words.iter().skip(1) {
            let w = normalize(word);
            if w.is_empty() {
                out.diagnostics.push(Diagnostic::error(
                    loc.clone(),
                    "empty word in a synonym group (only the first may be \"\", for words to drop)",
                ));
                ok = false;
            } else if normalized.contains(&w) {
                out.diagnostics.push(Diagnostic::warning(
                    loc.clone(),
                    format!("synonym `{word}` is given twice in its group"),
                ));
            } else {
                normalized.push(w);
            }
        }
        for w in normalized.iter().filter(|w| !w.is_empty()) {
            if let Some((other, at)) = owner.get(w) {
                let other = if other.is_empty() {
                    "\"\" (words to drop)".to_string()
                } else {
                    format!("`{other}`")
                };
                out.diagnostics.push(Diagnostic::error(
                    loc.clone(),
                    format!(
                        "synonym `{w}` is already in the group of {other} (at {at}); a word can stand for one thing only"
                    ),
                ));
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        for w in normalized.iter().filter(|w| !w.is_empty()) {
            owner.insert(w.clone(), (canonical.clone(), loc.clone()));
        }
        if normalized.len() == 1 {
            let message = if canonical.is_empty() {
                "synonym group \"\" lists no word to drop: it changes nothing".to_string()
            } else {
                format!("synonym group `{canonical}` has no other word: it changes nothing")
            };
            out.diagnostics.push(Diagnostic::warning(loc, message));
        }
        let variants = normalized.into_iter().skip(1).collect();
        out.synonyms.push(CheckedSynonyms {
            canonical,
            variants,
        });
    }
}

fn check_topics(topics: Vec<crate::diag::Located<super::model::ClarifySpec>>, out: &mut Checked) {
    let index: HashMap<&str, usize> = out
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.as_str(), i))
        .collect();
    let mut seen_ids: HashMap<String, Location> = HashMap::new();
    let mut checked = Vec::new();
    for located in topics {
        let loc = located.location;
        let spec = located.value;
        let mut ok = true;
        let mut error = |message: String| {
            out.diagnostics
                .push(Diagnostic::error(loc.clone(), message));
        };
        if spec.id.trim().is_empty() {
            error("clarify topic with an empty `id`".into());
            ok = false;
        } else if let Some(first) = seen_ids.get(&spec.id) {
            error(format!(
                "duplicate clarify id `{}` (first defined at {first})",
                spec.id
            ));
            ok = false;
        } else {
            seen_ids.insert(spec.id.clone(), loc.clone());
        }
        let mut words = |list: &[String], field: &str, ok: &mut bool| -> Vec<String> {
            let mut normalized = Vec::new();
            for word in list {
                let w = normalize(word);
                if w.is_empty() {
                    error(format!("clarify `{}`: empty word in `{field}`", spec.id));
                    *ok = false;
                } else if !normalized.contains(&w) {
                    normalized.push(w);
                }
            }
            normalized
        };
        let when = words(&spec.when, "when", &mut ok);
        let not = words(&spec.not, "not", &mut ok);
        let unless = words(&spec.unless, "unless", &mut ok);
        let kinds = words(&spec.kinds, "kinds", &mut ok);
        if spec.when.is_empty() {
            error(format!(
                "clarify `{}`: `when` needs at least one word that puts a message on the topic",
                spec.id
            ));
            ok = false;
        }
        if spec.options.is_empty() {
            error(format!("clarify `{}`: `options` is empty", spec.id));
            ok = false;
        } else if spec.options.len() > MAX_OPTIONS {
            error(format!(
                "clarify `{}`: {} options, at most {MAX_OPTIONS} (the user answers 1, 2 or 3)",
                spec.id,
                spec.options.len()
            ));
            ok = false;
        }
        let mut resolve = |ids: &[String], field: &str, ok: &mut bool| -> Vec<usize> {
            let mut found = Vec::new();
            for id in ids {
                match index.get(id.as_str()) {
                    Some(&i) if !found.contains(&i) => found.push(i),
                    Some(_) => {}
                    None => {
                        error(format!(
                            "clarify `{}`: `{field}` names `{id}`, which is no FAQ entry",
                            spec.id
                        ));
                        *ok = false;
                    }
                }
            }
            found
        };
        let options = resolve(&spec.options, "options", &mut ok);
        let entries = resolve(&spec.entries, "entries", &mut ok);
        if ok {
            checked.push(CheckedTopic {
                id: spec.id,
                location: loc.clone(),
                when,
                not,
                unless,
                entries,
                options,
                kinds,
            });
        }
    }
    out.topics = checked;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Located;
    use crate::faq::model::{ClarifySpec, FaqEntrySpec, SynonymGroupSpec};

    fn at<T>(line: usize, value: T) -> Located<T> {
        Located {
            location: Location::new("rules/faq.yaml", line, 3),
            value,
        }
    }

    fn entry(id: &str, question: &str, answer: &str) -> FaqEntrySpec {
        FaqEntrySpec {
            id: id.into(),
            question: question.into(),
            similar: vec![],
            keywords: vec![],
            answer: answer.into(),
        }
    }

    fn topic(options: &[&str]) -> ClarifySpec {
        ClarifySpec {
            id: "t".into(),
            when: vec!["注销".into()],
            not: vec![],
            entries: vec![],
            unless: vec![],
            options: options.iter().map(|s| s.to_string()).collect(),
            kinds: vec![],
        }
    }

    fn messages(checked: &Checked) -> Vec<String> {
        checked
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn duplicate_ids_are_errors_at_the_second_definition() {
        let checked = check(FaqSource {
            entries: vec![at(2, entry("a", "q", "x")), at(9, entry("a", "q2", "y"))],
            ..Default::default()
        });
        assert_eq!(
            messages(&checked),
            ["rules/faq.yaml:9:3: duplicate FAQ id `a` (first defined at rules/faq.yaml:2:3)"]
        );
        assert!(checked.has_errors());
    }

    #[test]
    fn empty_question_answer_phrasing_and_keyword_are_errors() {
        let mut e = entry("a", " ", "");
        e.similar = vec!["".into()];
        e.keywords = vec!["  ".into()];
        let checked = check(FaqSource {
            entries: vec![at(4, e)],
            ..Default::default()
        });
        let all = messages(&checked).join("\n");
        assert!(
            all.contains("4:3: FAQ entry `a`: empty `question`"),
            "{all}"
        );
        assert!(all.contains("empty `answer`"), "{all}");
        assert!(all.contains("empty phrasing"), "{all}");
        assert!(all.contains("empty keyword"), "{all}");
        assert!(checked.entries.is_empty());
    }

    #[test]
    fn long_answers_and_repeated_phrasings_are_warnings() {
        let mut e = entry("a", "小程序怎么注销", &"字".repeat(700));
        e.similar = vec!["小程序怎么注销".into()];
        let mut f = entry("b", "小程序怎么注销", "x");
        f.similar = vec![];
        let checked = check(FaqSource {
            entries: vec![at(1, e), at(5, f)],
            ..Default::default()
        });
        let all = messages(&checked).join("\n");
        assert!(!checked.has_errors(), "{all}");
        assert!(all.contains("2100 bytes"), "{all}");
        assert!(all.contains("is given twice"), "{all}");
        assert!(all.contains("also one of entry `a`"), "{all}");
    }

    #[test]
    fn synonym_groups_empty_or_overlapping_are_errors() {
        let checked = check(FaqSource {
            synonyms: vec![
                at(1, SynonymGroupSpec(vec![])),
                at(2, SynonymGroupSpec(vec!["公众号".into(), "订阅号".into()])),
                at(3, SynonymGroupSpec(vec!["号".into(), "订阅号".into()])),
                at(4, SynonymGroupSpec(vec!["门店".into()])),
                at(5, SynonymGroupSpec(vec!["".into(), "已经".into()])),
                at(6, SynonymGroupSpec(vec!["".into(), "".into()])),
                at(7, SynonymGroupSpec(vec!["".into(), "已经".into()])),
            ],
            ..Default::default()
        });
        let all = messages(&checked).join("\n");
        assert!(all.contains("1:3: empty synonym group"), "{all}");
        assert!(
            all.contains("3:3: synonym `订阅号` is already in the group of `公众号`"),
            "{all}"
        );
        assert!(all.contains("4:3: warning: synonym group `门店`"), "{all}");
        assert!(all.contains("6:3: empty word in a synonym group"), "{all}");
        assert!(
            all.contains("7:3: synonym `已经` is already in the group of \"\" (words to drop)"),
            "{all}"
        );
        assert_eq!(checked.synonyms.len(), 3);
    }

    #[test]
    fn clarify_options_must_name_entries_and_be_at_most_three() {
        let checked = check(FaqSource {
            entries: vec![at(1, entry("a", "q", "x")), at(2, entry("b", "q2", "y"))],
            clarify: vec![
                at(10, topic(&["a", "nope"])),
                at(20, topic(&["a", "b", "a", "b"])),
                at(
                    30,
                    ClarifySpec {
                        id: "u".into(),
                        when: vec![],
                        ..topic(&[])
                    },
                ),
            ],
            ..Default::default()
        });
        let all = messages(&checked).join("\n");
        assert!(
            all.contains("10:3: clarify `t`: `options` names `nope`, which is no FAQ entry"),
            "{all}"
        );
        assert!(all.contains("20:3: duplicate clarify id `t`"), "{all}");
        assert!(
            all.contains("20:3: clarify `t`: 4 options, at most 3"),
            "{all}"
        );
        assert!(all.contains("30:3: clarify `u`: `when` needs"), "{all}");
        assert!(
            all.contains("30:3: clarify `u`: `options` is empty"),
            "{all}"
        );
        assert!(checked.topics.is_empty());
    }
}
