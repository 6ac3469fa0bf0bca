//! The FAQ knowledge base: entries loaded with the rules, scored against a message when no rule
//! matched, answered directly, offered as a numbered clarify menu, or left to the default rule.
//! STUB: to be implemented by the FAQ work.

pub mod model;

use serde::Deserialize;

use crate::diag::{Diagnostic, Located};
use model::{ClarifySpec, FaqEntrySpec, SynonymGroupSpec};

/// Tuning knobs of the matcher (`faq:` in kefu.yaml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaqSettings {
    /// The best entry must score at least this to be answered.
    pub min_score: f32,
    /// …and be this far ahead of the second, else the user is asked to choose.
    pub min_margin: f32,
    /// How long a clarify menu stays answerable by its number.
    pub menu_ttl_secs: u64,
}

impl Default for FaqSettings {
    fn default() -> Self {
        Self {
            min_score: 0.5,
            min_margin: 0.1,
            menu_ttl_secs: 600,
        }
    }
}

/// Everything the rules loader found for the FAQ in a rules folder.
#[derive(Debug, Default, Clone)]
pub struct FaqSource {
    pub entries: Vec<Located<FaqEntrySpec>>,
    pub synonyms: Vec<Located<SynonymGroupSpec>>,
    pub clarify: Vec<Located<ClarifySpec>>,
}

/// An FAQ entry ready to answer.
#[derive(Debug, Clone)]
pub struct FaqEntry {
    pub id: String,
    pub question: String,
    pub answer: String,
}

/// One scored entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    pub faq: String,
    pub score: f32,
}

/// What the matcher makes of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum FaqOutcome {
    /// Good enough and clearly ahead.
    Answer { faq: String, score: f32 },
    /// Ask the user to choose among these entries (at most 3).
    Clarify { options: Vec<String> },
    /// Nothing good enough: the default rule applies.
    NoMatch,
}

/// The compiled, immutable FAQ index.
#[derive(Debug, Default)]
pub struct FaqIndex {
    entries: Vec<FaqEntry>,
}

/// The matcher's verdict with the scores behind it.
#[derive(Debug, Clone)]
pub struct FaqVerdict {
    pub outcome: FaqOutcome,
    /// Best entries, best first (for `kefu try` and the log).
    pub candidates: Vec<Candidate>,
    /// One line for an operator.
    pub why: String,
}

impl FaqIndex {
    /// Builds the index; errors (duplicate ids, unknown ids in clarify groups, …) and warnings
    /// carry the location of what caused them.
    pub fn build(
        source: FaqSource,
        _settings: &FaqSettings,
    ) -> (Option<FaqIndex>, Vec<Diagnostic>) {
        let entries = source
            .entries
            .into_iter()
            .map(|e| FaqEntry {
                id: e.value.id,
                question: e.value.question,
                answer: e.value.answer,
            })
            .collect();
        (Some(FaqIndex { entries }), Vec::new())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&FaqEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Scores the (normalized) message against every entry.
    pub fn ask(&self, _normalized: &str) -> FaqVerdict {
        FaqVerdict {
            outcome: FaqOutcome::NoMatch,
            candidates: Vec::new(),
            why: "faq matcher not built yet".into(),
        }
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
