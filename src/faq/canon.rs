//! Synonym canonicalization and word spotting: the two Aho-Corasick automata the FAQ matcher
//! builds once from the `synonyms:` data and runs on every message.
//!
//! Pure and allocation-light; knows nothing of entries or scores (that is `matcher.rs`).

use aho_corasick::{AhoCorasick, MatchKind};

/// Replaces every variant of a synonym group with the group's canonical (first) word.
///
/// Leftmost-longest: where several words could apply, the one starting first wins, and of those
/// the longest, so `个体工商户` is one word and not `个体` + `工商户`. One pass only: a
/// replacement is never re-scanned, so no pair of groups can loop.
#[derive(Debug, Clone, Default)]
pub(crate) struct Canonicalizer {
    /// All variants and canonical words; `None` when there are no synonyms.
    automaton: Option<AhoCorasick>,
    /// By pattern id: the canonical word that pattern stands for.
    replacements: Vec<String>,
}

impl Canonicalizer {
    /// `pairs` are (word as written, canonical word), both already normalized. Canonical words
    /// should be included as mapping to themselves so that they shadow shorter variants.
    pub(crate) fn build(pairs: Vec<(String, String)>) -> Result<Self, aho_corasick::BuildError> {
        if pairs.is_empty() {
            return Ok(Self::default());
        }
        let (patterns, replacements): (Vec<String>, Vec<String>) = pairs.into_iter().unzip();
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)?;
        Ok(Self {
            automaton: Some(automaton),
            replacements,
        })
    }

    /// The text with every synonym replaced by its canonical word.
    pub(crate) fn apply(&self, text: &str) -> String {
        let Some(ac) = &self.automaton else {
            return text.to_string();
        };
        let Ok(matches) = ac.try_find_iter(text) else {
            return text.to_string();
        };
        let mut out = String::with_capacity(text.len() + 8);
        let mut last = 0;
        for m in matches {
            let (Some(before), Some(found)) = (text.get(last..m.start()), text.get(m.range()))
            else {
                continue;
            };
            out.push_str(before);
            match self.replacements.get(m.pattern().as_usize()) {
                Some(canonical) => out.push_str(canonical),
                None => out.push_str(found),
            }
            last = m.end();
        }
        out.push_str(text.get(last..).unwrap_or(""));
        out
    }

    /// Heap bytes held by the automaton and the replacement table.
    pub(crate) fn memory_usage(&self) -> usize {
        self.automaton.as_ref().map_or(0, AhoCorasick::memory_usage)
            + self
                .replacements
                .iter()
                .map(String::capacity)
                .sum::<usize>()
    }
}

/// Finds which known words (canonical synonyms, keywords, topic words) occur in a text,
/// overlapping matches included: `主体已注销` contains both itself and `注销`.
#[derive(Debug, Clone, Default)]
pub(crate) struct WordSpotter {
    /// One pattern per word; pattern id = word id. `None` when there are no words.
    automaton: Option<AhoCorasick>,
    /// The number of words (the length of the presence table).
    len: usize,
}

impl WordSpotter {
    /// `words` are distinct and already canonical; word id = index.
    pub(crate) fn build(words: &[String]) -> Result<Self, aho_corasick::BuildError> {
        if words.is_empty() {
            return Ok(Self::default());
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(words)?;
        Ok(Self {
            automaton: Some(automaton),
            len: words.len(),
        })
    }

    /// For each word id, whether it occurs in `text`.
    pub(crate) fn presence(&self, text: &str) -> Vec<bool> {
        let mut present = vec![false; self.len];
        if let Some(ac) = &self.automaton
            && let Ok(matches) = ac.try_find_overlapping_iter(text)
        {
            for m in matches {
                if let Some(slot) = present.get_mut(m.pattern().as_usize()) {
                    *slot = true;
                }
            }
        }
        present
    }

    /// Heap bytes held by the automaton.
    pub(crate) fn memory_usage(&self) -> usize {
        self.automaton.as_ref().map_or(0, AhoCorasick::memory_usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(groups: &[&[&str]]) -> Canonicalizer {
        let mut pairs = Vec::new();
        for group in groups {
            for word in group.iter() {
                pairs.push((word.to_string(), group[0].to_string()));
            }
        }
        Canonicalizer::build(pairs).unwrap()
    }

    #[test]
    fn variants_become_the_canonical_word() {
        let c = canon(&[&["公众号", "订阅号", "服务号"], &["注销", "销户"]]);
        assert_eq!(c.apply("订阅号怎么销户"), "公众号怎么注销");
    }

    #[test]
    fn the_longest_word_wins() {
        let c = canon(&[
            &["个体户", "个体工商户", "个体"],
            &["主体已注销", "营业执照注销"],
        ]);
        assert_eq!(c.apply("个体工商户"), "个体户");
        assert_eq!(c.apply("个体户"), "个体户");
        assert_eq!(c.apply("营业执照注销了"), "主体已注销了");
    }

    #[test]
    fn no_synonyms_leaves_text_alone() {
        let c = Canonicalizer::build(Vec::new()).unwrap();
        assert_eq!(c.apply("小程序"), "小程序");
    }

    #[test]
    fn words_are_found_overlapping() {
        let words = vec![
            "主体已注销".to_string(),
            "注销".to_string(),
            "门店".to_string(),
        ];
        let spotter = WordSpotter::build(&words).unwrap();
        assert_eq!(
            spotter.presence("主体已注销的小程序"),
            vec![true, true, false]
        );
        assert_eq!(WordSpotter::default().presence("注销"), Vec::<bool>::new());
    }
}
