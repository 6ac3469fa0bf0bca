//! Trying messages without a push: what `kefu try`, `kefu eval` and the console's try box show.
//! The same [`super::decide`] as the webhook, with the session kept by the caller.

use serde::Serialize;

use super::Session;
use super::{Context, Decision};
use crate::faq::Candidate;
use crate::protocol::{InboundMessage, MsgId, MsgKind};
use crate::rules::RuleSet;

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

/// An event from `user` (`kf_close_session`, `user_enter_tempsession`, `CLICK` …).
pub fn event_message(user: &str, event: &str, event_key: Option<&str>, now: i64) -> InboundMessage {
    InboundMessage {
        to_user_name: "gh_kefu_try".into(),
        from_user_name: user.into(),
        create_time: now,
        msg_id: None,
        kind: MsgKind::Event {
            event: event.into(),
            session_from: None,
            event_key: event_key.map(str::to_string),
            kf_account: event
                .starts_with("kf_")
                .then(|| "kefu-try@agent".to_string()),
        },
    }
}

/// A message of another type (`image`, `voice`, `miniprogrampage`, …) without content; `text`
/// is a voice message's recognition.
pub fn typed_message(user: &str, msg_type: &str, text: Option<&str>, now: i64) -> InboundMessage {
    let kind = match msg_type.trim().to_ascii_lowercase().as_str() {
        "text" => MsgKind::Text {
            content: text.unwrap_or_default().into(),
        },
        "image" => MsgKind::Image {
            pic_url: String::new(),
            media_id: "kefu-try-media".into(),
        },
        "miniprogrampage" => MsgKind::MiniProgramPage {
            title: String::new(),
            app_id: String::new(),
            page_path: String::new(),
            thumb_url: String::new(),
            thumb_media_id: String::new(),
        },
        "voice" => MsgKind::Voice {
            media_id: "kefu-try-media".into(),
            format: "amr".into(),
            recognition: text.map(str::to_string),
        },
        other => MsgKind::Other {
            msg_type: other.to_string(),
        },
    };
    InboundMessage {
        to_user_name: "gh_kefu_try".into(),
        from_user_name: user.into(),
        create_time: now,
        msg_id: Some(MsgId::Number(now as u64)),
        kind,
    }
}

/// Decides any message and carries the session forward.
pub fn try_message(
    set: &RuleSet,
    msg: &InboundMessage,
    session: &mut Session,
    ctx: &Context,
) -> Decision {
    let mut decision = super::decide(set, msg, session, ctx);
    if let Some(next) = decision.session.take() {
        *session = next;
    }
    decision
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
