//! What the decision remembers of a user between messages, and what a message does to the
//! user's send window: the domain types the store keeps (behind its interface) and `decide`
//! reads and returns. Pure data.

use serde::{Deserialize, Serialize};

/// A clarify menu waiting for `1`, `2` or `3`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Menu {
    /// The FAQ entry ids offered, in the order of their numbers.
    pub options: Vec<String>,
    /// Unix seconds after which the menu no longer answers.
    pub expires_at: i64,
    /// The (normalized) question that asked for the menu: a reply in words rather than a number
    /// ("公众号") is read together with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
}

/// Per-user conversation state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Session {
    /// A clarify menu the next message may answer.
    pub menu: Option<Menu>,
    /// Unix seconds until which the user's messages are transferred to humans again.
    pub handoff_until: Option<i64>,
    /// The user's last FAQ answer, for a few minutes: a follow-up that names only a situation
    /// ("个体户的呢") is read with the kind of thing that answer was about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_faq: Option<LastFaq>,
    /// The user's consecutive text messages that no rule and no FAQ entry answered (for default
    /// rules with `misses: N`); reset when anything answers and when a handoff ends.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub misses: u32,
    /// Unix seconds after which `misses` is forgotten (a user back the next day starts afresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misses_until: Option<i64>,
}

impl Session {
    /// What is left of a session at `now`: expired parts removed.
    pub fn live(&self, now: i64) -> Session {
        let session = self;
        Session {
            menu: session
                .menu
                .clone()
                .filter(|m| m.expires_at > now && !m.options.is_empty()),
            handoff_until: session.handoff_until.filter(|&t| t > now),
            last_faq: session.last_faq.clone().filter(|l| l.expires_at > now),
            misses: if session.misses_until.is_some_and(|t| t > now) {
                session.misses
            } else {
                0
            },
            misses_until: session
                .misses_until
                .filter(|&t| t > now && session.misses > 0),
        }
    }

    /// When the session stops mattering; `None` when it is already the default.
    pub fn expires_at(&self) -> Option<i64> {
        let session = self;
        let menu = session
            .menu
            .as_ref()
            .filter(|m| !m.options.is_empty())
            .map(|m| m.expires_at);
        let last_faq = session.last_faq.as_ref().map(|l| l.expires_at);
        let misses = session.misses_until.filter(|_| session.misses > 0);
        [menu, session.handoff_until, last_faq, misses]
            .into_iter()
            .flatten()
            .max()
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The FAQ entry a user was last answered with, and until when a follow-up is read with it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LastFaq {
    /// The entry id.
    pub faq: String,
    /// Unix seconds after which the next message is read alone.
    pub expires_at: i64,
}

/// What opened (or refreshed) the user's send window (protocol doc §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuotaTrigger {
    /// Any message the user sends: 5 messages within 48 h.
    UserMessage,
    /// `user_enter_tempsession`: 2 messages within 1 min.
    SessionEnter,
}
