//! Trying messages without a push: what `kefu try`, `kefu eval` and the console's try box show.
//! The same [`super::decide`] as the webhook, with the session kept by the caller.

use serde::Serialize;

use super::{Context, Decision};
use crate::faq::Candidate;
use crate::protocol::{InboundMessage, MsgId, MsgKind};
use crate::rules::RuleSet;
use crate::store::Session;

/// One line of `kefu try --json` (SPEC §1).
#[derive(Debug, Serialize)]
pub struct TryOutput<'a> {
    pub input: &'a str,
    pub rule: Option<&'a str>,
    pub faq: Option<&'a str>,
    pub action: &'static str,
    pub replies: Vec<String>,
    pub handoff: bool,
    pub candidates: &'a [Candidate],
    pub why: &'a str,
}

impl<'a> TryOutput<'a> {
    pub fn new(input: &'a str, d: &'a Decision) -> Self {
        Self {
            input,
            rule: d.rule.as_deref(),
            faq: d.faq.as_deref(),
            action: d.action.as_str(),
            replies: d.replies.iter().map(|r| r.preview()).collect(),
            handoff: d.handoff,
            candidates: &d.candidates,
            why: &d.why,
        }
    }
}

/// A text message from `user`, as a push would carry it.
pub fn text_message(user: &str, text: &str, now: i64) -> InboundMessage {
    InboundMessage {
        to_user_name: "gh_kefu_try".into(),
        from_user_name: user.into(),
        create_time: now,
        msg_id: Some(MsgId::Number(now as u64)),
        kind: MsgKind::Text {
            content: text.into(),
        },
    }
}

/// Decides one message and carries the session forward.
pub fn try_one(
    set: &RuleSet,
    user: &str,
    text: &str,
    session: &mut Session,
    ctx: &Context,
) -> Decision {
    let msg = text_message(user, text, ctx.now.timestamp());
    let mut decision = super::decide(set, &msg, session, ctx);
    if let Some(next) = decision.session.take() {
        *session = next;
    }
    decision
}
