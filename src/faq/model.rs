//! The serde mirror of the FAQ part of a rules file (`faq:`, `synonyms:`, `clarify:`).

use serde::Deserialize;

/// One entry under `faq:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaqEntrySpec {
    pub id: String,
    pub question: String,
    #[serde(default)]
    pub similar: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    pub answer: String,
}

/// One group under `synonyms:`: words users write for the same thing; the first is canonical.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct SynonymGroupSpec(pub Vec<String>);

/// One group under `clarify:`: when a message mentions the topic but none of the specifics,
/// offer these entries as a numbered menu.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClarifySpec {
    pub id: String,
    /// Words that put a message on this topic (any one).
    pub when: Vec<String>,
    /// Words that make it specific enough to score normally (any one).
    #[serde(default)]
    pub unless: Vec<String>,
    /// FAQ entry ids offered, in order (at most 3).
    pub options: Vec<String>,
}
