//! The serde mirror of the FAQ part of a rules file (`faq:`, `synonyms:`, `clarify:`).

use serde::Deserialize;

/// One entry under `faq:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaqEntrySpec {
    /// Unique across all rules files; named by rules (`faq: <id>`), logs and stats.
    pub id: String,
    /// The canonical question, also the line shown for this entry in a clarify menu.
    pub question: String,
    /// Other phrasings of the question, as users type them.
    #[serde(default)]
    pub similar: Vec<String>,
    /// Strong signals of this entry: one present raises its score, none present lowers it.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// The text sent as the answer.
    pub answer: String,
}

/// One group under `synonyms:`: words users write for the same thing; the first is canonical.
/// Every other word of the group is replaced by it, in messages and in the FAQ data alike.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct SynonymGroupSpec(
    /// The canonical word, then its variants.
    pub Vec<String>,
);

/// One topic under `clarify:`.
///
/// A message is on the topic when it contains one of the `when` words and none of the `not`
/// words (all after synonyms). The topic's `entries` are never answered to a message off the
/// topic. A message on the topic that has none of the `unless` words (nor a keyword of one of the
/// topic's entries) does not say which case it is about: it gets the `options` menu.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClarifySpec {
    /// Names the topic in diagnostics and in the matcher's `why`.
    pub id: String,
    /// Words that put a message on this topic (any one).
    pub when: Vec<String>,
    /// Words that take a message off the topic even when a `when` word appears (any one):
    /// "关闭评论" is not about closing the account.
    #[serde(default)]
    pub not: Vec<String>,
    /// The entries of this topic: answered or offered only to messages on the topic.
    #[serde(default)]
    pub entries: Vec<String>,
    /// Words that make a message specific enough to score normally (any one).
    #[serde(default)]
    pub unless: Vec<String>,
    /// FAQ entry ids offered, in order (at most 3).
    pub options: Vec<String>,
    /// Words naming the kind of thing a question of this topic is about (小程序, 公众号). An
    /// entry of the topic whose every phrasing names the same one kind is of that kind: it is
    /// never answered to a message that names only other kinds, and a follow-up that names no
    /// kind ("个体户的呢") is read with the kind of the user's last answer.
    #[serde(default)]
    pub kinds: Vec<String>,
}
