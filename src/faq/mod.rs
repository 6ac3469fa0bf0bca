//! The FAQ knowledge base: entries loaded with the rules, scored against a message when no rule
//! matched, answered directly, offered as a numbered clarify menu, or left to the default rule.
//!
//! - `model`: the serde mirror of `faq:`, `synonyms:` and `clarify:` in a rules file;
//! - `build`: checks that data and reports problems where they were written;
//! - `canon` and `matcher`: compile it once into flat tables and score a message in microseconds;
//! - this file: the public [`FaqIndex`] and the decision (answer, clarify, no match);
//! - [`eval`]: measures the decisions on a list of cases (`kefu eval`).
//!
//! Pure: no I/O, no clock, no dependence on rules, dispatch or the web layer. The rules loader
//! fills a [`FaqSource`] and calls [`FaqIndex::build`]; dispatch calls [`FaqIndex::ask`] with the
//! message normalized by [`crate::text::normalize`].

mod build;
mod canon;
pub mod eval;
mod matcher;
pub mod model;
#[cfg(test)]
mod tests;

use serde::Deserialize;

use crate::diag::{Diagnostic, Located, Location};
use matcher::{Matcher, Scored, Tuning};
use model::{ClarifySpec, FaqEntrySpec, SynonymGroupSpec};

pub use build::{MAX_ANSWER_BYTES, MAX_OPTIONS};

/// Tuning knobs of the matcher (`faq:` in kefu.yaml).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaqSettings {
    /// The best entry must score at least this to be answered.
    pub min_score: f32,
    /// …and be this far ahead of the second, else the user is asked to choose.
    pub min_margin: f32,
    /// Entries scoring below this are never offered in a menu of close candidates.
    pub clarify_min_score: f32,
    /// How many scored entries a verdict lists for operators (`candidates`).
    pub max_candidates: usize,
    /// How long a clarify menu stays answerable by its number.
    pub menu_ttl_secs: u64,
    /// A best entry scoring at least this, and clearly ahead, is answered even when the message
    /// is on a clarify topic without a word saying which case: a topic's menu never overrides a
    /// confident match.
    pub confident_score: f32,
    /// How long after an FAQ answer a follow-up that names only a situation ("个体户的呢") is read
    /// with the kind of thing (小程序, 公众号) that answer was about.
    pub follow_up_secs: u64,
}

impl Default for FaqSettings {
    fn default() -> Self {
        Self {
            min_score: 0.5,
            min_margin: 0.1,
            clarify_min_score: 0.35,
            max_candidates: 3,
            menu_ttl_secs: 600,
            confident_score: 0.8,
            follow_up_secs: 300,
        }
    }
}

/// Everything the rules loader found for the FAQ in a rules folder.
#[derive(Debug, Default, Clone)]
pub struct FaqSource {
    /// Every `faq:` entry of every rules file, in load order.
    pub entries: Vec<Located<FaqEntrySpec>>,
    /// Every `synonyms:` group.
    pub synonyms: Vec<Located<SynonymGroupSpec>>,
    /// Every `clarify:` topic.
    pub clarify: Vec<Located<ClarifySpec>>,
}

/// An FAQ entry ready to answer.
#[derive(Debug, Clone)]
pub struct FaqEntry {
    /// As written in the rules file.
    pub id: String,
    /// The question, shown in clarify menus.
    pub question: String,
    /// The text sent to the user (surrounding blanks trimmed).
    pub answer: String,
    /// Where the entry is defined.
    pub location: Location,
}

/// One scored entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    /// The entry id.
    pub faq: String,
    /// In [0, 1], three decimals.
    pub score: f32,
}

/// What the matcher makes of a message. Entries are named by their index in
/// [`FaqIndex::entries`] (see [`FaqIndex::entry`]).
#[derive(Debug, Clone, PartialEq)]
pub enum FaqOutcome {
    /// Good enough and clearly ahead.
    Answer { entry: usize, score: f32 },
    /// Ask the user to choose among these entries (at most 3).
    Clarify { options: Vec<usize> },
    /// Nothing good enough: the default rule applies.
    NoMatch,
}

/// The compiled, immutable FAQ index.
#[derive(Debug, Default)]
pub struct FaqIndex {
    /// In load order; an entry's index is its position here.
    entries: Vec<FaqEntry>,
    /// The compiled scoring tables and topics.
    matcher: Matcher,
    /// Thresholds of the decision.
    settings: FaqSettings,
}

/// What a follow-up inherits from the user's last answer.
struct FollowUp {
    /// Topics the message is read on although it names none of their `when` words.
    topics: Vec<usize>,
}

/// How much a caller wants to know of a verdict: a push needs only the outcome; `kefu try`,
/// `kefu eval` and the console also show why, and the best candidates. The caller pays only for
/// what it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    /// The outcome alone: `candidates` and `why` stay empty.
    #[default]
    Outcome,
    /// The outcome, the best candidates and one line on why.
    Explained,
}

/// The matcher's verdict with the scores behind it.
#[derive(Debug, Clone)]
pub struct FaqVerdict {
    /// What to do.
    pub outcome: FaqOutcome,
    /// Best entries, best first (with [`Detail::Explained`] only).
    pub candidates: Vec<Candidate>,
    /// One line for an operator (with [`Detail::Explained`] only).
    pub why: String,
}

impl FaqIndex {
    /// Builds the index; errors (duplicate ids, unknown ids in clarify groups, …) and warnings
    /// carry the location of what caused them. No index when there is an error.
    pub fn build(source: FaqSource, settings: &FaqSettings) -> (Option<FaqIndex>, Vec<Diagnostic>) {
        Self::build_tuned(source, settings, Tuning::default())
    }

    pub(crate) fn build_tuned(
        source: FaqSource,
        settings: &FaqSettings,
        tuning: Tuning,
    ) -> (Option<FaqIndex>, Vec<Diagnostic>) {
        let first_location = source
            .entries
            .first()
            .map(|e| e.location.clone())
            .or_else(|| source.synonyms.first().map(|s| s.location.clone()))
            .or_else(|| source.clarify.first().map(|c| c.location.clone()));
        let mut checked = build::check(source);
        if checked.has_errors() {
            return (None, std::mem::take(&mut checked.diagnostics));
        }
        let matcher = match Matcher::compile(&checked, tuning) {
            Ok((m, warnings)) => {
                checked.diagnostics.extend(warnings);
                checked.diagnostics.extend(m.topic_captures(&checked));
                m
            }
            Err(message) => {
                let location = first_location.unwrap_or_else(|| Location::new("", 0, 0));
                checked
                    .diagnostics
                    .push(Diagnostic::error(location, format!("FAQ index: {message}")));
                return (None, checked.diagnostics);
            }
        };
        let entries = checked
            .entries
            .into_iter()
            .map(|e| FaqEntry {
                id: e.id,
                question: e.question,
                answer: e.answer,
                location: e.location,
            })
            .collect();
        let index = FaqIndex {
            entries,
            matcher,
            settings: settings.clone(),
        };
        (Some(index), checked.diagnostics)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry with this id.
    pub fn get(&self, id: &str) -> Option<&FaqEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// The entry at `index` (as a [`FaqOutcome`] names it).
    pub fn entry(&self, index: usize) -> Option<&FaqEntry> {
        self.entries.get(index)
    }

    /// Every entry, in load order.
    pub fn entries(&self) -> &[FaqEntry] {
        &self.entries
    }

    /// The settings the index decides with.
    pub fn settings(&self) -> &FaqSettings {
        &self.settings
    }

    /// Approximate heap bytes of the compiled matcher (not counting the answers' text).
    pub fn memory_usage(&self) -> usize {
        self.matcher.memory_usage()
    }

    /// Scores the (normalized) message against every entry and decides:
    ///
    /// 1. a message that is, word for word after synonyms, one of an entry's own phrasings gets
    ///    that entry;
    /// 2. entries of a clarify topic are eligible only when the message is on that topic, and an
    ///    entry of one kind (`kinds`: 小程序, 公众号) only when the message names no other kind;
    /// 3. a message on a topic that names none of its specifics gets the topic's menu, unless
    ///    its best entry scores at least `confident_score` and is clearly ahead;
    /// 4. the best eligible entry is answered when it scores at least `min_score` and leads the
    ///    next by `min_margin`;
    /// 5. otherwise the eligible entries within `min_margin` of the best and above
    ///    `clarify_min_score` are offered as a menu (up to 3);
    /// 6. otherwise no match.
    pub fn ask(&self, normalized: &str, detail: Detail) -> FaqVerdict {
        self.decide(normalized, None, detail)
    }

    /// Reads a follow-up to the answer `last` (an entry id), on `last`'s topic:
    ///
    /// - a message that names a situation of the topic (a keyword or `unless` word: "个体户的呢",
    ///   "政府单位的") but no kind is read with `last`'s kind ("小程序" after a Mini Program
    ///   answer);
    /// - a message that names only a kind ("公众号的呢") is read with `last`'s question, its own
    ///   kind taken out ("个体工商户的如何注销").
    ///
    /// `None` when the message is no such follow-up: it is then read alone ([`Self::ask`]).
    pub fn ask_follow_up(
        &self,
        normalized: &str,
        last: &str,
        detail: Detail,
    ) -> Option<FaqVerdict> {
        let e = self.entries.iter().position(|x| x.id == last)?;
        let topics = self.matcher.entry_topics.get(e)?.clone();
        if topics.is_empty() {
            return None;
        }
        let scored = self.matcher.score(normalized);
        let kinds_named = scored.which(&self.matcher.all_kinds);
        let on_its_topics = |test: &dyn Fn(&matcher::Topic) -> bool| {
            topics
                .iter()
                .any(|&t| self.matcher.topics.get(t).is_some_and(test))
        };
        if on_its_topics(&|t| scored.has_any(&t.not)) {
            return None;
        }
        let names_a_situation = on_its_topics(&|t| {
            t.specific
                .iter()
                .any(|w| !self.matcher.all_kinds.contains(w) && scored.has_any(&[*w]))
        });
        let kind = self.matcher.entry_kind.get(e).copied().flatten();
        let (text, with) = if names_a_situation && kinds_named.is_empty() {
            match kind {
                Some(k) => {
                    let word = self.matcher.word(k);
                    (format!("{word} {normalized}"), format!(" and {word}"))
                }
                None => (normalized.to_string(), String::new()),
            }
        } else if !names_a_situation
            && !kinds_named.is_empty()
            && !on_its_topics(&|t| scored.has_any(&t.when))
        {
            let mut question = self
                .matcher
                .canonical(&crate::text::normalize(&self.entries.get(e)?.question));
            for &k in kind.iter() {
                question = question.replace(self.matcher.word(k), "");
            }
            (
                format!("{normalized} {question}"),
                format!(" and its question \"{question}\""),
            )
        } else {
            return None;
        };
        let context = FollowUp { topics };
        let mut verdict = self.decide(&text, Some(&context), detail);
        if detail == Detail::Explained {
            verdict.why = format!(
                "follow-up to {last}, read on its topic{with}: {}",
                verdict.why
            );
        }
        Some(verdict)
    }

    fn decide(&self, normalized: &str, follow_up: Option<&FollowUp>, detail: Detail) -> FaqVerdict {
        let explain = detail == Detail::Explained;
        let scored = self.matcher.score(normalized);
        let read_as = if !explain || scored.canonical == normalized {
            String::new()
        } else {
            format!("; read as \"{}\"", scored.canonical)
        };
        // The explanation, rendered only when asked for.
        let why = |render: &dyn Fn() -> String| if explain { render() } else { String::new() };

        // 2. which topics the message is on; which entries may answer
        let on_topic: Vec<bool> = self
            .matcher
            .topics
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let carried = follow_up.is_some_and(|f| f.topics.contains(&i));
                (carried && !scored.has_any(&t.not)) || scored.on_topic(&t.when, &t.not)
            })
            .collect();
        let named_kinds = scored.which(&self.matcher.all_kinds);
        let eligible = |e: usize| -> bool {
            let on = match self.matcher.entry_topics.get(e) {
                Some(topics) if !topics.is_empty() => topics
                    .iter()
                    .any(|&t| on_topic.get(t).copied().unwrap_or(false)),
                _ => true,
            };
            let kind_ok = match self.matcher.entry_kind.get(e).copied().flatten() {
                Some(k) => named_kinds.is_empty() || named_kinds.contains(&k),
                None => true,
            };
            on && kind_ok
        };
        let mut ranked: Vec<(usize, f32)> = scored
            .scores
            .iter()
            .enumerate()
            .filter(|(e, s)| **s > 0.0 && eligible(*e))
            .map(|(e, s)| (e, *s))
            .collect();
        // best first; ties keep load order
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let candidates: Vec<Candidate> = if explain {
            ranked
                .iter()
                .take(self.settings.max_candidates)
                .map(|&(e, score)| Candidate {
                    faq: self.id_of(e),
                    score,
                })
                .collect()
        } else {
            Vec::new()
        };

        // 1. an entry's own phrasing: no topic, kind or margin overrides it
        if let Some(e) = scored.exact {
            let score = scored.scores.get(e).copied().unwrap_or(0.0);
            return FaqVerdict {
                outcome: FaqOutcome::Answer { entry: e, score },
                candidates,
                why: why(&|| {
                    format!(
                        "faq {}: the message is one of its own phrasings{read_as}",
                        self.id_of(e)
                    )
                }),
            };
        }

        let s = &self.settings;
        let (next, next_score) = match ranked.get(1) {
            Some(&(e, score)) => (Some(e), score),
            None => (None, 0.0),
        };
        let next_id = || next.map_or_else(|| "none".to_string(), |e| self.id_of(e));
        let confident = ranked.first().is_some_and(|&(_, best)| {
            best >= s.confident_score.max(s.min_score) && best - next_score >= s.min_margin - 1e-6
        });

        // 3. on a topic, but not saying which case (and no confident match)
        for (t, topic) in self.matcher.topics.iter().enumerate() {
            if !confident
                && on_topic.get(t).copied().unwrap_or(false)
                && !scored.has_any(&topic.specific)
            {
                return FaqVerdict {
                    outcome: FaqOutcome::Clarify {
                        options: topic.options.clone(),
                    },
                    candidates,
                    why: why(&|| {
                        format!(
                            "on topic {} ({}) without a word saying which case: menu{read_as}",
                            topic.id,
                            self.words_present(&scored, &topic.when)
                        )
                    }),
                };
            }
        }

        let Some(&(best, best_score)) = ranked.first() else {
            return FaqVerdict {
                outcome: FaqOutcome::NoMatch,
                candidates,
                why: why(&|| self.why_no_candidate(&scored, &on_topic, &read_as)),
            };
        };

        // 4. clear winner
        let margin = best_score - next_score;
        if best_score >= s.min_score && margin >= s.min_margin - 1e-6 {
            return FaqVerdict {
                outcome: FaqOutcome::Answer {
                    entry: best,
                    score: best_score,
                },
                candidates,
                why: why(&|| {
                    format!(
                        "faq {} {best_score:.3} (next {} {next_score:.3}, margin {margin:.3} >= {:.2}){read_as}",
                        self.id_of(best),
                        next_id(),
                        s.min_margin
                    )
                }),
            };
        }

        // 5. several close ones
        let close: Vec<(usize, f32)> = ranked
            .iter()
            .copied()
            .filter(|&(_, score)| {
                score >= s.clarify_min_score && best_score - score < s.min_margin - 1e-6
            })
            .take(MAX_OPTIONS)
            .collect();
        if close.len() >= 2 {
            return FaqVerdict {
                outcome: FaqOutcome::Clarify {
                    options: close.iter().map(|&(e, _)| e).collect(),
                },
                candidates,
                why: why(&|| {
                    let listed: Vec<String> = close
                        .iter()
                        .map(|&(e, score)| format!("{} {score:.3}", self.id_of(e)))
                        .collect();
                    format!(
                        "close call, margin {margin:.3} < {:.2}: {}{read_as}",
                        s.min_margin,
                        listed.join(", ")
                    )
                }),
            };
        }

        // 6. nothing good enough
        FaqVerdict {
            outcome: FaqOutcome::NoMatch,
            candidates,
            why: why(&|| {
                format!(
                    "best {} {best_score:.3} below min_score {:.2}{read_as}",
                    self.id_of(best),
                    s.min_score
                )
            }),
        }
    }

    /// Why no entry was eligible at all: off topic, or no shared word.
    fn why_no_candidate(&self, scored: &Scored, on_topic: &[bool], read_as: &str) -> String {
        let vetoed: Vec<String> = self
            .matcher
            .topics
            .iter()
            .filter(|t| scored.has_any(&t.when) && !scored.on_topic(&t.when, &t.not))
            .map(|t| {
                format!(
                    "{} ({}) but also {}",
                    t.id,
                    self.words_present(scored, &t.when),
                    self.words_present(scored, &t.not)
                )
            })
            .collect();
        if !vetoed.is_empty() {
            format!("off topic: {}{read_as}", vetoed.join("; "))
        } else if self.matcher.topics.is_empty() || on_topic.iter().any(|&t| t) {
            format!("no FAQ entry shares a word with the message{read_as}")
        } else {
            let words: Vec<&str> = self
                .matcher
                .topics
                .iter()
                .flat_map(|t| t.when.iter().map(|&w| self.matcher.word(w)))
                .collect();
            format!("off topic: none of {}{read_as}", words.join("/"))
        }
    }

    fn id_of(&self, e: usize) -> String {
        self.entries
            .get(e)
            .map(|x| x.id.clone())
            .unwrap_or_default()
    }

    fn words_present(&self, scored: &Scored, words: &[u32]) -> String {
        let found: Vec<&str> = words
            .iter()
            .filter(|&&w| scored.has_any(&[w]))
            .map(|&w| self.matcher.word(w))
            .collect();
        found.join(", ")
    }

    /// The ids of entries named by index (a clarify menu's options, as a session keeps them).
    pub fn ids(&self, entries: &[usize]) -> Vec<String> {
        entries.iter().map(|&e| self.id_of(e)).collect()
    }

    /// The text of a clarify menu listing these entries as 1., 2., 3.
    pub fn menu_text(&self, options: &[String]) -> String {
        let mut text = String::from("您想咨询的是哪一个问题？请回复序号：");
        for (i, id) in options.iter().enumerate() {
            let q = self.get(id).map(|e| e.question.as_str()).unwrap_or(id);
            text.push_str(&format!("\n{}. {}", i + 1, q));
        }
        text
    }
}
