//! Synonym canonicalization and word spotting: the two Aho-Corasick automata the FAQ matcher
//! builds once from the `synonyms:` data and runs on every message.
//!
//! Pure and allocation-light; knows nothing of entries or scores (that is `matcher.rs`).

use aho_corasick::{AhoCorasick, MatchKind};

/// Drops filler words, then replaces every variant of a synonym group with the group's canonical
/// (first) word.
///
/// Two passes, so that "公司已经没了" loses "已经" and then meets the synonym "公司没了". In each
/// pass leftmost-longest applies: where several words could apply, the one starting first wins,
/// and of those the longest, so `个体工商户` is one word and not `个体` + `工商户`. A replacement is
/// never re-scanned, so no pair of groups can loop.
#[derive(Debug, Clone, Default)]
pub(crate) struct Canonicalizer {
    /// Filler words to drop; `None` when there are none.
    fillers: Option<AhoCorasick>,
    /// All variants and canonical words; `None` when there are no synonyms.
    automaton: Option<AhoCorasick>,
    /// By pattern id: the canonical word that pattern stands for.
    replacements: Vec<String>,
}

/// Replaces each match of `ac` by `replacement(pattern id)` (the matched text when `None`).
fn replace_all<'a>(
    ac: &AhoCorasick,
    text: &str,
    replacement: impl Fn(usize) -> Option<&'a str>,
) -> String {
    let Ok(matches) = ac.try_find_iter(text) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len() + 8);
    let mut last = 0;
    for m in matches {
        let (Some(before), Some(found)) = (text.get(last..m.start()), text.get(m.range())) else {
            continue;
        };
        out.push_str(before);
        out.push_str(replacement(m.pattern().as_usize()).unwrap_or(found));
        last = m.end();
    }
    out.push_str(text.get(last..).unwrap_or(""));
    out
}

impl Canonicalizer {
    /// `pairs` are (word as written, canonical word), both already normalized. Canonical words
    /// should be included as mapping to themselves so that they shadow shorter variants. A pair
    /// whose canonical word is empty makes its word a filler, dropped in the first pass.
    pub(crate) fn build(pairs: Vec<(String, String)>) -> Result<Self, aho_corasick::BuildError> {
        let (fillers, pairs): (Vec<_>, Vec<_>) = pairs
            .into_iter()
            .filter(|(word, _)| !word.is_empty())
            .partition(|(_, canonical)| canonical.is_empty());
        let fillers = if fillers.is_empty() {
            None
        } else {
            let words: Vec<String> = fillers.into_iter().map(|(w, _)| w).collect();
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&words)?,
            )
        };
        if pairs.is_empty() {
            return Ok(Self {
                fillers,
                ..Self::default()
            });
        }
        let mut this = Self {
            fillers,
            ..Self::default()
        };
        // variants are written as users type them: drop their fillers too, so that a variant
        // with a filler inside still matches the message once the message lost it
        let (patterns, replacements): (Vec<String>, Vec<String>) = pairs
            .into_iter()
            .map(|(word, canonical)| (this.drop_fillers(&word), canonical))
            .filter(|(word, _)| !word.is_empty())
            .unzip();
        this.automaton = Some(
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)?,
        );
        this.replacements = replacements;
        Ok(this)
    }

    fn drop_fillers(&self, text: &str) -> String {
        match &self.fillers {
            Some(ac) => replace_all(ac, text, |_| Some("")),
            None => text.to_string(),
        }
    }

    /// The text without fillers and with every synonym replaced by its canonical word.
    ///
    /// Synonyms apply twice, so that a word a typo was corrected to can take part in a longer
    /// one: "公司注消了" becomes "公司注销了" and then meets "主体已注销"; "认正没完成" becomes
    /// "认证没完成" and then "未认证". Two passes, never more: nothing can loop.
    pub(crate) fn apply(&self, text: &str) -> String {
        let text = self.drop_fillers(text);
        match &self.automaton {
            Some(ac) => {
                let swap = |p: usize| self.replacements.get(p).map(String::as_str);
                let once = replace_all(ac, &text, swap);
                replace_all(ac, &once, swap)
            }
            None => text,
        }
    }

    /// Heap bytes held by the automata and the replacement table.
    pub(crate) fn memory_usage(&self) -> usize {
        self.fillers.as_ref().map_or(0, AhoCorasick::memory_usage)
            + self.automaton.as_ref().map_or(0, AhoCorasick::memory_usage)
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
    fn fillers_are_dropped_before_synonyms_apply() {
        let c = canon(&[
            &["", "已经", "请问"],
            &["主体已注销", "公司没了", "主体已经注销"],
        ]);
        assert_eq!(c.apply("请问公司已经没了"), "主体已注销");
        assert_eq!(c.apply("主体已经注销"), "主体已注销");
        assert_eq!(canon(&[&["", "已经"]]).apply("已经已经"), "");
    }

    #[test]
    fn a_corrected_typo_takes_part_in_a_longer_word() {
        let c = canon(&[
            &["注销", "注消"],
            &["主体已注销", "公司注销了"],
            &["认证", "认正"],
            &["未认证", "认证没完成"],
        ]);
        assert_eq!(c.apply("公司注消了"), "主体已注销");
        assert_eq!(c.apply("认正没完成"), "未认证");
        assert_eq!(c.apply("主体已注销"), "主体已注销");
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
