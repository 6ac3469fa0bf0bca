//! Scoring: compiles the checked FAQ data into flat tables once, then scores a message against
//! every entry in microseconds, allocating only a few small vectors per message.
//!
//! # How a message is scored
//!
//! 1. Synonyms: every variant is replaced by its group's canonical word ([`Canonicalizer`]); the
//!    data went through the same replacement at build, so "订阅号" meets "公众号".
//! 2. Features: the characters and character bigrams of the canonical text (Chinese has no spaces;
//!    bigrams catch most two-character words without a dictionary), plus the known words it
//!    contains (canonical synonyms, keywords, topic words; [`WordSpotter`]). Each feature weighs
//!    by how rare it is among the entries (inverse document frequency), so "个体户" counts and
//!    "怎么" hardly does. Features the data never uses carry no information and are ignored.
//! 3. Similarity: cosine between the message and each phrasing (question and `similar`) of an
//!    entry; the entry takes its best phrasing.
//! 4. Evidence against: each known word of the message that none of the entry's phrasings or
//!    keywords uses multiplies the score by `1 - unexplained_penalty` ("公众号" in the message
//!    speaks against every entry that is only about Mini Programs).
//! 5. Keywords: an entry whose keyword appears gets `keyword_bonus` of the way to 1; an entry
//!    with keywords none of which appears loses `missing_keyword_penalty` ("门店小程序可以注销吗"
//!    and "小程序可以注销吗" share most characters, but only one says 门店).
//!
//! The decision (answer, clarify, no match) is made in `mod.rs` from these scores.

use std::collections::HashMap;

use super::build::Checked;
use super::canon::{Canonicalizer, WordSpotter};
use crate::diag::{Diagnostic, Location};

/// Internal weights of the scoring. Defaults chosen by measurement on the evaluation sets
/// (see `faq::tests`); not operator settings, so that kefu.yaml stays small.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tuning {
    /// Weight of single-character features relative to bigrams.
    pub unigram: f32,
    /// Weight of bigram features.
    pub bigram: f32,
    /// Weight of whole known words.
    pub word: f32,
    /// Score factor lost per message word an entry never uses.
    pub unexplained_penalty: f32,
    /// Share of the distance to 1 an entry gains when one of its keywords appears.
    pub keyword_bonus: f32,
    /// Score factor lost by an entry that has keywords when none of them appears.
    pub missing_keyword_penalty: f32,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            unigram: 0.4,
            bigram: 1.0,
            word: 2.5,
            unexplained_penalty: 0.3,
            keyword_bonus: 0.2,
            missing_keyword_penalty: 0.4,
        }
    }
}

/// A clarify topic, compiled to word ids.
#[derive(Debug, Clone)]
pub(crate) struct Topic {
    pub id: String,
    /// Word ids that put a message on the topic.
    pub when: Vec<u32>,
    /// Word ids that take it off.
    pub not: Vec<u32>,
    /// Word ids that make it specific: `unless` and the keywords of the topic's entries.
    pub specific: Vec<u32>,
    /// Entry indices offered in the menu.
    pub options: Vec<usize>,
    /// Word ids naming the kinds of thing the topic's questions are about.
    pub kinds: Vec<u32>,
}

/// What the matcher knows of one message: its canonical text, the words in it, and every
/// entry's score.
#[derive(Debug, Clone)]
pub(crate) struct Scored {
    /// The message after synonyms.
    pub canonical: String,
    /// By word id: whether the word occurs.
    pub present: Vec<bool>,
    /// By entry index: the score in [0, 1].
    pub scores: Vec<f32>,
    /// By clause of the message (split at punctuation): whether each word occurs in it.
    pub clauses: Vec<Vec<bool>>,
    /// The entry one of whose own phrasings the message is, word for word after synonyms
    /// (punctuation and blanks aside); `None` when it is none, or a phrasing two entries share.
    pub exact: Option<usize>,
}

impl Scored {
    /// The word ids of `words` that occur in the message.
    pub(crate) fn which(&self, words: &[u32]) -> Vec<u32> {
        words
            .iter()
            .copied()
            .filter(|&w| self.present.get(w as usize).copied().unwrap_or(false))
            .collect()
    }

    /// Whether some clause of the message has one of the `when` words and none of the `not`
    /// words: "公众号的评论怎么关闭" is about comments, but in "我开公众号写文章，现在想把号注销了"
    /// the article is part of the story, not what is closed.
    pub(crate) fn on_topic(&self, when: &[u32], not: &[u32]) -> bool {
        let has = |present: &[bool], words: &[u32]| {
            words
                .iter()
                .any(|&w| present.get(w as usize).copied().unwrap_or(false))
        };
        self.clauses.iter().any(|c| has(c, when) && !has(c, not))
    }

    pub(crate) fn has_any(&self, words: &[u32]) -> bool {
        words
            .iter()
            .any(|&w| self.present.get(w as usize).copied().unwrap_or(false))
    }
}

/// The compiled tables.
#[derive(Debug, Default)]
pub(crate) struct Matcher {
    /// Synonym replacement.
    canon: Canonicalizer,
    /// Known words: finds them in a canonical text.
    spotter: WordSpotter,
    /// Word text by id, for `why` lines.
    words: Vec<String>,
    /// Feature key → feature id.
    feature_ids: HashMap<u64, u32>,
    /// By feature id: squared weight (binary features: a shared feature adds w² to the dot product).
    weight2: Vec<f32>,
    /// By feature id: the phrasings that have it (offsets into `postings`).
    posting_start: Vec<u32>,
    /// Phrasing ids, grouped by feature.
    postings: Vec<u32>,
    /// By phrasing id: its entry index.
    phrasing_entry: Vec<u32>,
    /// By phrasing id: its norm.
    phrasing_norm: Vec<f32>,
    /// By entry index: sorted word ids its phrasings and keywords use.
    entry_vocab: Vec<Vec<u32>>,
    /// By entry index: word ids of its keywords.
    entry_keywords: Vec<Vec<u32>>,
    /// By word id: how many entries use it (0: no entry, so it says nothing about any).
    word_df: Vec<u32>,
    /// Clarify topics.
    pub topics: Vec<Topic>,
    /// By entry index: indices of the topics it belongs to (empty: always eligible).
    pub entry_topics: Vec<Vec<usize>>,
    /// By entry index: the kind word (of its topics' `kinds`) every phrasing of it names, when
    /// exactly one does.
    pub entry_kind: Vec<Option<u32>>,
    /// The kind words of every topic (`kinds`), gathered once at build.
    pub all_kinds: Vec<u32>,
    /// Every phrasing as a key of [`phrase_key`] → its entry (`u32::MAX`: shared by two entries).
    exact: HashMap<String, u32>,
    tuning: Tuning,
}

/// Punctuation that ends a clause (blanks do not: "official account 注销" is one clause).
fn is_clause_break(c: char) -> bool {
    matches!(
        c,
        ',' | '.'
            | '?'
            | '!'
            | ';'
            | ':'
            | '\n'
            | '，'
            | '。'
            | '？'
            | '！'
            | '；'
            | '：'
            | '、'
            | '…'
    )
}

/// A text reduced to its letters and digits: "个体户小程序，怎么注销？" and "个体户小程序怎么注销"
/// are the same phrasing.
fn phrase_key(canonical: &str) -> String {
    canonical.chars().filter(|c| c.is_alphanumeric()).collect()
}

const KIND_UNI: u64 = 1 << 62;
const KIND_BI: u64 = 2 << 62;
const KIND_WORD: u64 = 3 << 62;

/// Characters and bigrams of `text`; punctuation and blanks separate.
fn char_features(text: &str, out: &mut Vec<u64>) {
    let mut prev: Option<char> = None;
    for c in text.chars() {
        if c.is_alphanumeric() {
            out.push(KIND_UNI | c as u64);
            if let Some(p) = prev {
                out.push(KIND_BI | ((p as u64) << 21) | c as u64);
            }
            prev = Some(c);
        } else {
            prev = None;
        }
    }
}

fn word_features(present: &[bool], out: &mut Vec<u64>) {
    for (id, &here) in present.iter().enumerate() {
        if here {
            out.push(KIND_WORD | id as u64);
        }
    }
}

impl Matcher {
    /// Compiles the checked data. Fails only when an automaton cannot be built (absurd sizes).
    /// Warnings (a keyword or clarify word that is nothing but filler words) come with it.
    pub(crate) fn compile(
        checked: &Checked,
        tuning: Tuning,
    ) -> Result<(Self, Vec<Diagnostic>), String> {
        let mut warnings = Vec::new();
        // 1. Synonyms: every word of a group maps to the canonical word, itself included.
        let mut pairs = Vec::new();
        for group in &checked.synonyms {
            if !group.canonical.is_empty() {
                pairs.push((group.canonical.clone(), group.canonical.clone()));
            }
            for v in &group.variants {
                pairs.push((v.clone(), group.canonical.clone()));
            }
        }
        let canon = Canonicalizer::build(pairs).map_err(|e| format!("synonyms: {e}"))?;

        // 2. Known words: canonical synonyms, keywords and topic words, all canonicalized.
        let mut words: Vec<String> = Vec::new();
        let mut word_id: HashMap<String, u32> = HashMap::new();
        // `None` for a word made only of fillers: it would match everywhere
        let mut intern = |w: &str, words: &mut Vec<String>, at: &Location| -> Option<u32> {
            let w = canon.apply(w);
            if w.is_empty() {
                warnings.push(Diagnostic::warning(
                    at.clone(),
                    "a keyword or clarify word consists of filler words only; it is ignored",
                ));
                return None;
            }
            if let Some(&id) = word_id.get(&w) {
                return Some(id);
            }
            let id = words.len() as u32;
            words.push(w.clone());
            word_id.insert(w, id);
            Some(id)
        };
        let nowhere = Location::new("", 0, 0);
        for group in checked.synonyms.iter().filter(|g| !g.canonical.is_empty()) {
            intern(&group.canonical, &mut words, &nowhere);
        }
        let entry_keywords: Vec<Vec<u32>> = checked
            .entries
            .iter()
            .map(|e| {
                e.keywords
                    .iter()
                    .filter_map(|k| intern(k, &mut words, &e.location))
                    .collect()
            })
            .collect();
        let mut topics = Vec::new();
        for t in &checked.topics {
            let mut ids = |list: &[String]| -> Vec<u32> {
                list.iter()
                    .filter_map(|w| intern(w, &mut words, &t.location))
                    .collect()
            };
            let when = ids(&t.when);
            let not = ids(&t.not);
            let mut specific: Vec<u32> = ids(&t.unless);
            for &e in &t.entries {
                if let Some(kws) = entry_keywords.get(e) {
                    specific.extend(kws);
                }
            }
            specific.sort_unstable();
            specific.dedup();
            let kinds = ids(&t.kinds);
            topics.push(Topic {
                id: t.id.clone(),
                when,
                not,
                specific,
                options: t.options.clone(),
                kinds,
            });
        }
        let spotter = WordSpotter::build(&words).map_err(|e| format!("words: {e}"))?;
        let mut entry_topics = vec![Vec::new(); checked.entries.len()];
        for (ti, t) in checked.topics.iter().enumerate() {
            for &e in &t.entries {
                if let Some(list) = entry_topics.get_mut(e) {
                    list.push(ti);
                }
            }
        }

        // 3. Features of every phrasing; document frequency counted per entry.
        let mut phrasing_features: Vec<Vec<u64>> = Vec::new();
        let mut phrasing_entry = Vec::new();
        let mut entry_vocab = Vec::with_capacity(checked.entries.len());
        let mut df: HashMap<u64, u32> = HashMap::new();
        let mut entry_kind = Vec::with_capacity(checked.entries.len());
        let mut exact: HashMap<String, u32> = HashMap::new();
        for (ei, entry) in checked.entries.iter().enumerate() {
            let mut vocab: Vec<u32> = entry_keywords.get(ei).cloned().unwrap_or_default();
            let mut entry_features: Vec<u64> = Vec::new();
            // the kind words of the entry's topics; narrowed to those every phrasing names
            let mut kinds: Vec<u32> = entry_topics
                .get(ei)
                .map(|ts| {
                    ts.iter()
                        .filter_map(|&t| topics.get(t))
                        .flat_map(|t| t.kinds.iter().copied())
                        .collect()
                })
                .unwrap_or_default();
            for p in &entry.phrasings {
                let text = canon.apply(p);
                let present = spotter.presence(&text);
                kinds.retain(|&k| present.get(k as usize).copied().unwrap_or(false));
                let key = phrase_key(&text);
                if !key.is_empty() {
                    let owner = exact.entry(key).or_insert(ei as u32);
                    if *owner != ei as u32 {
                        *owner = u32::MAX;
                    }
                }
                let mut f = Vec::new();
                char_features(&text, &mut f);
                word_features(&present, &mut f);
                f.sort_unstable();
                f.dedup();
                vocab.extend(
                    present
                        .iter()
                        .enumerate()
                        .filter(|(_, here)| **here)
                        .map(|(id, _)| id as u32),
                );
                entry_features.extend(&f);
                phrasing_features.push(f);
                phrasing_entry.push(ei as u32);
            }
            for &k in entry_keywords.get(ei).map(Vec::as_slice).unwrap_or(&[]) {
                entry_features.push(KIND_WORD | k as u64);
            }
            entry_features.sort_unstable();
            entry_features.dedup();
            for f in entry_features {
                *df.entry(f).or_default() += 1;
            }
            vocab.sort_unstable();
            vocab.dedup();
            entry_vocab.push(vocab);
            kinds.sort_unstable();
            kinds.dedup();
            entry_kind.push(match kinds.as_slice() {
                [one] => Some(*one),
                _ => None,
            });
        }
        let mut word_df = vec![0u32; words.len()];
        for vocab in &entry_vocab {
            for &w in vocab {
                if let Some(n) = word_df.get_mut(w as usize) {
                    *n += 1;
                }
            }
        }

        // 4. Weights and postings.
        let n = checked.entries.len() as f32;
        let mut keys: Vec<u64> = df.keys().copied().collect();
        keys.sort_unstable();
        let mut feature_ids = HashMap::with_capacity(keys.len());
        let mut weight2 = Vec::with_capacity(keys.len());
        for (id, key) in keys.iter().enumerate() {
            feature_ids.insert(*key, id as u32);
            let d = df.get(key).copied().unwrap_or(1) as f32;
            let idf = (1.0 + n / d).ln();
            let kind = match key & (3 << 62) {
                KIND_UNI => tuning.unigram,
                KIND_BI => tuning.bigram,
                _ => tuning.word,
            };
            let w = kind * idf;
            weight2.push(w * w);
        }
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); keys.len()];
        let mut phrasing_norm = Vec::with_capacity(phrasing_features.len());
        for (pi, features) in phrasing_features.iter().enumerate() {
            let mut norm2 = 0.0;
            for f in features {
                if let Some(&id) = feature_ids.get(f) {
                    if let Some(list) = lists.get_mut(id as usize) {
                        list.push(pi as u32);
                    }
                    norm2 += weight2.get(id as usize).copied().unwrap_or(0.0);
                }
            }
            phrasing_norm.push(f32::sqrt(norm2));
        }
        let mut posting_start = Vec::with_capacity(lists.len() + 1);
        let mut postings = Vec::new();
        for list in lists {
            posting_start.push(postings.len() as u32);
            postings.extend(list);
        }
        posting_start.push(postings.len() as u32);

        let all_kinds = topics
            .iter()
            .flat_map(|t| t.kinds.iter().copied())
            .collect();
        let matcher = Self {
            all_kinds,
            canon,
            spotter,
            words,
            feature_ids,
            weight2,
            posting_start,
            postings,
            phrasing_entry,
            phrasing_norm,
            entry_vocab,
            entry_keywords,
            word_df,
            topics,
            entry_topics,
            entry_kind,
            exact,
            tuning,
        };
        Ok((matcher, warnings))
    }

    /// The text of a word id.
    pub(crate) fn word(&self, id: u32) -> &str {
        self.words.get(id as usize).map_or("", String::as_str)
    }

    /// Scores a normalized message against every entry.
    pub(crate) fn score(&self, normalized: &str) -> Scored {
        let canonical = self.canon.apply(normalized);
        let present = self.spotter.presence(&canonical);
        let mut keys = Vec::with_capacity(canonical.len());
        char_features(&canonical, &mut keys);
        word_features(&present, &mut keys);
        let mut ids: Vec<u32> = keys
            .iter()
            .filter_map(|k| self.feature_ids.get(k).copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();

        let mut dots = vec![0.0f32; self.phrasing_norm.len()];
        let mut norm2 = 0.0f32;
        for &id in &ids {
            let w2 = self.weight2.get(id as usize).copied().unwrap_or(0.0);
            norm2 += w2;
            let start = self.posting_start.get(id as usize).copied().unwrap_or(0) as usize;
            let end = self
                .posting_start
                .get(id as usize + 1)
                .copied()
                .unwrap_or(0) as usize;
            for &p in self.postings.get(start..end).unwrap_or(&[]) {
                if let Some(d) = dots.get_mut(p as usize) {
                    *d += w2;
                }
            }
        }
        let norm = f32::sqrt(norm2);

        let mut scores = vec![0.0f32; self.entry_vocab.len()];
        if norm > 0.0 {
            for (p, &dot) in dots.iter().enumerate() {
                let pn = self.phrasing_norm.get(p).copied().unwrap_or(0.0);
                let entry = self.phrasing_entry.get(p).copied().unwrap_or(0) as usize;
                if pn > 0.0
                    && let Some(s) = scores.get_mut(entry)
                {
                    *s = s.max(dot / (norm * pn));
                }
            }
        }
        let message_words: Vec<u32> = present
            .iter()
            .enumerate()
            .filter(|(id, here)| **here && self.word_df.get(*id).copied().unwrap_or(0) > 0)
            .map(|(id, _)| id as u32)
            .collect();
        for (e, score) in scores.iter_mut().enumerate() {
            let vocab = self.entry_vocab.get(e).map(Vec::as_slice).unwrap_or(&[]);
            for w in &message_words {
                if vocab.binary_search(w).is_err() {
                    *score *= 1.0 - self.tuning.unexplained_penalty;
                }
            }
            let keywords = self.entry_keywords.get(e).map(Vec::as_slice).unwrap_or(&[]);
            if keywords
                .iter()
                .any(|&k| present.get(k as usize).copied().unwrap_or(false))
            {
                *score += self.tuning.keyword_bonus * (1.0 - *score);
            } else if !keywords.is_empty() {
                *score *= 1.0 - self.tuning.missing_keyword_penalty;
            }
            *score = (score.clamp(0.0, 1.0) * 1000.0).round() / 1000.0;
        }
        let clauses: Vec<Vec<bool>> = if canonical.contains(is_clause_break) {
            canonical
                .split(is_clause_break)
                .filter(|c| !c.trim().is_empty())
                .map(|c| self.spotter.presence(c))
                .collect()
        } else {
            vec![present.clone()]
        };
        let exact = self
            .exact
            .get(&phrase_key(&canonical))
            .map(|&e| e as usize)
            .filter(|&e| e < scores.len());
        Scored {
            canonical,
            present,
            scores,
            clauses,
            exact,
        }
    }

    /// The text after fillers and synonyms.
    pub(crate) fn canonical(&self, normalized: &str) -> String {
        self.canon.apply(normalized)
    }

    /// Warnings for clarify topics that capture entries' own phrasings: a phrasing on a topic
    /// that names none of its specific words (the topic's menu answers it, not the entry), and
    /// a phrasing off the topic of an entry the topic holds (the gate keeps the entry from it).
    /// Either way users who ask exactly as the entry says get something else.
    pub(crate) fn topic_captures(&self, checked: &Checked) -> Vec<Diagnostic> {
        let mut warnings = Vec::new();
        for (ti, (topic, spec)) in self.topics.iter().zip(&checked.topics).enumerate() {
            for (ei, entry) in checked.entries.iter().enumerate() {
                let held = self.entry_topics.get(ei).is_some_and(|ts| ts.contains(&ti));
                let mut menu = Vec::new();
                let mut gated = Vec::new();
                for p in &entry.phrasings {
                    let present = self.spotter.presence(&self.canon.apply(p));
                    let has = |words: &[u32]| {
                        words
                            .iter()
                            .any(|&w| present.get(w as usize).copied().unwrap_or(false))
                    };
                    let on = has(&topic.when) && !has(&topic.not);
                    if on && !has(&topic.specific) {
                        menu.push(format!("`{p}`"));
                    } else if held && !on {
                        gated.push(format!("`{p}`"));
                    }
                }
                if !menu.is_empty() {
                    warnings.push(Diagnostic::warning(
                        entry.location.clone(),
                        format!(
                            "clarify `{}` (at {}) captures phrasings of entry `{}`: {} {} on the topic without an `unless` word or keyword, so messages like {} get the menu instead of this entry; add the word that names this case to the entry's `keywords` or the topic's `unless`",
                            topic.id,
                            spec.location,
                            entry.id,
                            menu.join(", "),
                            if menu.len() == 1 { "is" } else { "are" },
                            if menu.len() == 1 { "it" } else { "them" },
                        ),
                    ));
                }
                if !gated.is_empty() {
                    warnings.push(Diagnostic::warning(
                        entry.location.clone(),
                        format!(
                            "clarify `{}` (at {}) holds entry `{}` but {} {} off the topic (no `when` word, or a `not` word): only those exact words reach the entry; add a `when` word or take the entry out of the topic's `entries`",
                            topic.id,
                            spec.location,
                            entry.id,
                            gated.join(", "),
                            if gated.len() == 1 { "is" } else { "are" },
                        ),
                    ));
                }
            }
        }
        warnings
    }

    /// Heap bytes of the compiled tables (approximate), for the memory budget test.
    pub(crate) fn memory_usage(&self) -> usize {
        use std::mem::size_of;
        self.canon.memory_usage()
            + self.spotter.memory_usage()
            + self.words.iter().map(String::capacity).sum::<usize>()
            + self.feature_ids.capacity() * (size_of::<u64>() + size_of::<u32>() + 8)
            + self.weight2.capacity() * 4
            + self.posting_start.capacity() * 4
            + self.postings.capacity() * 4
            + self.phrasing_entry.capacity() * 4
            + self.phrasing_norm.capacity() * 4
            + self.entry_kind.capacity() * 8
            + self
                .exact
                .keys()
                .map(|k| k.capacity() + 4 + 8)
                .sum::<usize>()
            + self
                .entry_vocab
                .iter()
                .chain(&self.entry_keywords)
                .map(|v| v.capacity() * 4)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_characters_and_bigrams_split_by_punctuation() {
        let mut f = Vec::new();
        char_features("ab,c", &mut f);
        assert_eq!(
            f,
            vec![
                KIND_UNI | 'a' as u64,
                KIND_UNI | 'b' as u64,
                KIND_BI | (('a' as u64) << 21) | 'b' as u64,
                KIND_UNI | 'c' as u64,
            ]
        );
    }

    #[test]
    fn feature_kinds_do_not_collide() {
        // the largest char in a bigram stays below the kind bits
        let big = KIND_BI | ((char::MAX as u64) << 21) | char::MAX as u64;
        assert_eq!(big & (3 << 62), KIND_BI);
    }
}
