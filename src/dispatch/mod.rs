//! The decision: what kefu does with one message, as a pure function of the rule set, the
//! message, the user's session and the time. Shared by the webhook, `kefu try` and `kefu eval`,
//! so that what an operator tries is what users get.
//!
//! Order for a text message (SPEC §4): a pending clarify menu answered by its number; a sticky
//! handoff; the highest-priority matching rule; the FAQ matcher; the default rule; nothing.

pub mod trial;

pub mod session;
pub use session::{LastFaq, Menu, QuotaTrigger, Session};

use chrono::DateTime;
use chrono_tz::Tz;
use serde::Serialize;

pub use crate::faq::Detail;
use crate::faq::{Candidate, FaqEntry, FaqOutcome};
use crate::outbound::{FetchReply, OutboundMessage};
use crate::protocol::{InboundMessage, MsgKind};
use crate::rules::{Captures, MatchInput, Rule, RuleSet, render_template};
use crate::text::normalize;

/// What kind of answer was given (`action` of `kefu try --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A rule's replies.
    Reply,
    /// An FAQ entry, directly or through a rule with `faq:`.
    Faq,
    /// A numbered menu asking the user to choose.
    Clarify,
    /// A transfer to humans decided by a rule or by a sticky handoff.
    Handoff,
    /// Only the default rule applied.
    Default,
    /// Nothing applied.
    Ignore,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reply => "reply",
            Action::Faq => "faq",
            Action::Clarify => "clarify",
            Action::Handoff => "handoff",
            Action::Default => "default",
            Action::Ignore => "ignore",
        }
    }
}

/// The decision for one message, explainable to an operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The rule that decided, if any.
    pub rule: Option<String>,
    /// The FAQ entry answered, if any.
    pub faq: Option<String>,
    pub action: Action,
    /// Messages to send, in order.
    pub replies: Vec<OutboundMessage>,
    /// Transfer the conversation to the human tool.
    pub handoff: bool,
    /// The FAQ matcher's best entries (empty when a rule decided, and unless the context asked
    /// for [`Detail::Explained`]).
    pub candidates: Vec<Candidate>,
    /// One line for an operator (empty unless the context asked for [`Detail::Explained`]).
    pub why: String,
    /// The user's session after this message; `None` when unchanged.
    #[serde(skip)]
    pub session: Option<Session>,
}

/// The time and per-app settings a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Now, in the configured time zone.
    pub now: DateTime<Tz>,
    /// How long a handoff sticks.
    pub handoff_minutes: u64,
    /// How long a clarify menu answers by number.
    pub menu_ttl_secs: u64,
    /// Picks the reply of a rule with several: the `pick % n`-th. The caller draws it (at
    /// random for a push), so that `decide` itself is a pure function and tests can fix it.
    pub pick: u64,
    /// Whether the decision explains itself (`why`, `candidates`): tools and the console ask
    /// for it; a push does not, and pays nothing for it.
    pub detail: Detail,
}

impl Context {
    pub fn at_unix(now: i64, tz: Tz, handoff_minutes: u64, menu_ttl_secs: u64) -> Self {
        let now = DateTime::from_timestamp(now, 0)
            .unwrap_or_default()
            .with_timezone(&tz);
        Self {
            now,
            handoff_minutes,
            menu_ttl_secs,
            pick: 0,
            detail: Detail::Outcome,
        }
    }

    /// This context with explanations (see [`Context::detail`]).
    pub fn explained(self) -> Self {
        Self {
            detail: Detail::Explained,
            ..self
        }
    }

    /// This context with the reply pick `pick` (see [`Context::pick`]).
    pub fn with_pick(self, pick: u64) -> Self {
        Self { pick, ..self }
    }

    /// The context of a tool (`kefu try`, `kefu eval`, the console's try box): it shows one of
    /// a rule's replies at random, as a push would get, and says why.
    pub fn for_tools(now: i64, tz: Tz, handoff_minutes: u64, menu_ttl_secs: u64) -> Self {
        Self::at_unix(now, tz, handoff_minutes, menu_ttl_secs)
            .with_pick(rand::random())
            .explained()
    }

    fn unix(&self) -> i64 {
        self.now.timestamp()
    }
}

/// Which send window a message opens (protocol doc §6.3).
pub fn quota_trigger(msg: &InboundMessage) -> Option<QuotaTrigger> {
    match &msg.kind {
        MsgKind::Event { event, .. } if event == "user_enter_tempsession" => {
            Some(QuotaTrigger::SessionEnter)
        }
        MsgKind::Event { .. } => None,
        _ => Some(QuotaTrigger::UserMessage),
    }
}

/// How long a user's count of consecutive misses is remembered after the last one.
pub const MISSES_MEMORY_SECS: i64 = 24 * 3600;

/// The text a message offers to the text rules and the FAQ: a text message's content, or a
/// voice message's speech recognition (matched as if typed). `None` for everything else.
pub fn message_text(kind: &MsgKind) -> Option<&str> {
    match kind {
        MsgKind::Text { content } => Some(content),
        MsgKind::Voice {
            recognition: Some(r),
            ..
        } if !r.trim().is_empty() => Some(r),
        _ => None,
    }
}

/// The `EventKey` an `event_key:` rule compares: a subscribe event's without its `qrscene_`
/// prefix (a follow through a QR code with a scene), the others' as sent.
pub fn event_key(kind: &MsgKind) -> Option<&str> {
    match kind {
        MsgKind::Event {
            event,
            event_key: Some(key),
            ..
        } => {
            let key = key.trim();
            if event.trim().eq_ignore_ascii_case("subscribe") {
                Some(key.strip_prefix("qrscene_").unwrap_or(key))
            } else {
                Some(key)
            }
        }
        _ => None,
    }
}

/// The agent events of an Official Account's customer-service tool.
fn agent_event(event: &str) -> Option<&'static str> {
    const EVENTS: [&str; 3] = ["kf_create_session", "kf_close_session", "kf_switch_session"];
    EVENTS.into_iter().find(|e| event.eq_ignore_ascii_case(e))
}

/// Decides what to do with a message.
pub fn decide(set: &RuleSet, msg: &InboundMessage, session: &Session, ctx: &Context) -> Decision {
    let textual = message_text(&msg.kind);
    let text = textual.map(normalize).unwrap_or_default();
    let event = match &msg.kind {
        MsgKind::Event { event, .. } => Some(event.as_str()),
        _ => None,
    };
    let is_event = matches!(msg.kind, MsgKind::Event { .. });
    let now = ctx.unix();
    // Any message answers (or dismisses) a pending menu: only the very next one counts.
    let mut next = session.clone();
    let had_menu = next.menu.take();
    let mut session_changed = had_menu.is_some();

    // The agent closed the session (an Official Account's kf_close_session): the handoff ends,
    // and so does the count of misses that led to it.
    if let Some(name) = event.and_then(agent_event)
        && name == "kf_close_session"
        && (next.handoff_until.is_some() || next.misses > 0)
    {
        next.handoff_until = None;
        next.misses = 0;
        next.misses_until = None;
        session_changed = true;
    }

    let mut decision = decide_inner(set, msg, &text, event, had_menu.as_ref(), session, ctx);
    if let (Some(name), MsgKind::Event { kf_account, .. }) =
        (event.and_then(agent_event), &msg.kind)
        && decision.rule.is_none()
        && ctx.detail == Detail::Explained
    {
        let agent = kf_account.as_deref().unwrap_or("?");
        decision.why = match name {
            "kf_close_session" => format!("agent {agent} closed the session: handoff ended"),
            "kf_create_session" => format!("agent {agent} took the session"),
            _ => format!("the session was switched to agent {agent}"),
        };
    }

    // Consecutive misses, for default rules with `misses: N` (counted only when a rule uses it).
    if textual.is_some() && set.counts_misses() {
        let missed = matches!(decision.action, Action::Default | Action::Ignore);
        let sticky = decision.action == Action::Handoff && decision.rule.is_none();
        if missed {
            next.misses = session.misses.saturating_add(1);
            next.misses_until = Some(now.saturating_add(MISSES_MEMORY_SECS));
            session_changed = true;
        } else if !sticky && next.misses > 0 {
            next.misses = 0;
            next.misses_until = None;
            session_changed = true;
        }
    }

    if let Some(options) = decision.session.take().and_then(|s| s.menu) {
        next.menu = Some(options);
        session_changed = true;
    }
    if decision.handoff && !is_event {
        next.handoff_until = Some(expiry(now, ctx.handoff_minutes.saturating_mul(60)));
        // Humans have it now: when the handoff ends, the bot starts counting afresh.
        next.misses = 0;
        next.misses_until = None;
        session_changed = true;
    }
    if next.handoff_until.is_some_and(|until| until <= now) {
        next.handoff_until = None;
        session_changed = true;
    }
    // An FAQ answer is remembered for a few minutes, so that a follow-up naming only a
    // situation ("个体户的呢") is read with it.
    if let Some(faq) = &decision.faq {
        next.last_faq = Some(LastFaq {
            faq: faq.clone(),
            expires_at: expiry(now, set.faq().settings().follow_up_secs),
        });
        session_changed = true;
    } else if next.last_faq.as_ref().is_some_and(|l| l.expires_at <= now) {
        next.last_faq = None;
        session_changed = true;
    }
    decision.session = session_changed.then_some(next);
    decision
}

fn decide_inner(
    set: &RuleSet,
    msg: &InboundMessage,
    text: &str,
    event: Option<&str>,
    menu: Option<&Menu>,
    session: &Session,
    ctx: &Context,
) -> Decision {
    let now = ctx.unix();
    let explain = ctx.detail == Detail::Explained;
    let is_text = message_text(&msg.kind).is_some();
    let is_event = matches!(msg.kind, MsgKind::Event { .. });
    // A message type kefu does not know (device messages, new types): answered `success` and
    // logged, never a default rule or a handoff.
    let is_unknown = matches!(msg.kind, MsgKind::Other { .. });

    // 1. A pending clarify menu answered by its number.
    if is_text
        && let Some(menu) = menu
        && menu.expires_at > now
        && let Some(choice) = menu_choice(text, menu.options.len())
        && let Some(id) = menu.options.get(choice)
        && let Some(entry) = set.faq().get(id)
    {
        let why = if explain {
            format!("clarify menu choice {} → faq {}", choice + 1, entry.id)
        } else {
            String::new()
        };
        return faq_answer(entry, Vec::new(), why);
    }

    // 2. A sticky handoff: the user is talking to humans.
    if !is_event && !is_unknown && session.handoff_until.is_some_and(|until| until > now) {
        return Decision {
            rule: None,
            faq: None,
            action: Action::Handoff,
            replies: Vec::new(),
            handoff: true,
            candidates: Vec::new(),
            why: if explain {
                "user is in a handoff: transferred again".into()
            } else {
                String::new()
            },
            session: None,
        };
    }

    // 3. The highest-priority matching rule.
    let input = MatchInput {
        msg_type: msg.kind.type_name(),
        event,
        event_key: event_key(&msg.kind),
        text,
        now: ctx.now,
    };
    let hit = match set.match_message(&input) {
        // A recognized voice message: rules for voice, and the text rules as if typed; the
        // higher priority wins (ties: the voice rule).
        hit if is_text && matches!(msg.kind, MsgKind::Voice { .. }) => {
            let typed = set.match_message(&MatchInput {
                msg_type: "text",
                ..input
            });
            match (hit, typed) {
                (Some(v), Some(t)) if t.rule.priority > v.rule.priority => Some(t),
                (Some(v), _) => Some(v),
                (None, t) => t,
            }
        }
        hit => hit,
    };
    if let Some(hit) = hit {
        let why = if explain {
            set.explain(&hit, &input)
        } else {
            String::new()
        };
        let text = message_text(&msg.kind).unwrap_or("");
        let chosen = Chosen::Matched {
            captures: &hit.captures,
            is_event,
        };
        return from_rule(set, hit.rule, text, chosen, why, ctx);
    }

    // 4. The FAQ matcher, for text.
    let mut candidates = Vec::new();
    let mut faq_why = String::new();
    if is_text && !text.is_empty() && !set.faq().is_empty() {
        let faq = set.faq();
        let mut verdict = faq.ask(text, ctx.detail);
        // A menu answered in words ("公众号", "个体户的") rather than by number: read the reply
        // together with the question that asked for the menu, and answer if that settles it.
        if !matches!(verdict.outcome, FaqOutcome::Answer { .. })
            && let Some(question) = menu
                .filter(|m| m.expires_at > now)
                .and_then(|m| m.question.as_deref())
        {
            let combined = faq.ask(&format!("{question} {text}"), ctx.detail);
            if matches!(combined.outcome, FaqOutcome::Answer { .. }) {
                verdict = combined;
                if explain {
                    verdict.why = format!(
                        "read with the menu's question {question:?}: {}",
                        verdict.why
                    );
                }
            }
        }
        // A follow-up to the user's last FAQ answer ("个体户的呢" after a Mini Program answer):
        // read on that answer's topic and with its kind, when that settles more than the
        // message alone does.
        if !matches!(verdict.outcome, FaqOutcome::Answer { .. })
            && let Some(last) = session.last_faq.as_ref().filter(|l| l.expires_at > now)
            && let Some(follow) = faq.ask_follow_up(text, &last.faq, ctx.detail)
        {
            let better = matches!(
                (&follow.outcome, &verdict.outcome),
                (FaqOutcome::Answer { .. }, _) | (FaqOutcome::Clarify { .. }, FaqOutcome::NoMatch)
            );
            if better {
                verdict = follow;
            }
        }
        candidates = verdict.candidates;
        faq_why = verdict.why;
        match verdict.outcome {
            FaqOutcome::Answer { entry, .. } => {
                if let Some(entry) = faq.entry(entry) {
                    return faq_answer(entry, candidates, faq_why);
                }
            }
            FaqOutcome::Clarify { options } if !options.is_empty() => {
                let options = faq.ids(options.get(..3).unwrap_or(&options));
                return Decision {
                    rule: None,
                    faq: None,
                    action: Action::Clarify,
                    replies: vec![OutboundMessage::text(faq.menu_text(&options))],
                    handoff: false,
                    candidates,
                    why: faq_why,
                    session: Some(Session {
                        menu: Some(Menu {
                            options,
                            expires_at: expiry(now, ctx.menu_ttl_secs),
                            question: Some(text.to_string()),
                        }),
                        ..Session::default()
                    }),
                };
            }
            _ => {}
        }
    }

    // 5. The default rule (never for events: a welcome is not a fallback; never for a type
    // kefu does not know). `misses` counts this message when it is text.
    let misses = if is_text {
        session.misses.saturating_add(1)
    } else {
        session.misses
    };
    if !is_event
        && !is_unknown
        && let Some(rule) = set.pick_default(&ctx.now, misses)
    {
        let text = message_text(&msg.kind).unwrap_or("");
        let mut d = from_rule(set, rule, text, Chosen::Default, String::new(), ctx);
        d.candidates = candidates;
        if !explain {
            return d;
        }
        let counted = if rule.misses > 0 {
            format!(" (miss {misses} in a row)")
        } else {
            String::new()
        };
        d.why = if faq_why.is_empty() {
            format!("no rule matched: default rule {}{counted}", rule.id)
        } else {
            format!(
                "no rule matched, {faq_why}: default rule {}{counted}",
                rule.id
            )
        };
        return d;
    }
    if is_unknown || is_event {
        return Decision {
            rule: None,
            faq: None,
            action: Action::Ignore,
            replies: Vec::new(),
            handoff: false,
            candidates,
            why: match event {
                _ if !explain => String::new(),
                Some(e) => format!("event {e}: no rule for it, answered success"),
                None => format!(
                    "message type {} is not one kefu answers: logged, answered success",
                    msg.kind.type_name()
                ),
            },
            session: None,
        };
    }

    // 6. Nothing.
    Decision {
        rule: None,
        faq: None,
        action: Action::Ignore,
        replies: Vec::new(),
        handoff: false,
        candidates,
        why: if !explain {
            String::new()
        } else if faq_why.is_empty() {
            "no rule matched and there is no default rule".into()
        } else {
            format!("no rule matched, {faq_why}, and there is no default rule")
        },
        session: None,
    }
}

/// `now + secs`, saturating: a huge setting from the config means "practically forever", never
/// an overflow on the request path (nor a wrap to the past, which would turn stickiness off).
fn expiry(now: i64, secs: u64) -> i64 {
    now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// The decision that answers with an FAQ entry.
fn faq_answer(entry: &FaqEntry, candidates: Vec<Candidate>, why: String) -> Decision {
    Decision {
        rule: None,
        faq: Some(entry.id.clone()),
        action: Action::Faq,
        replies: vec![OutboundMessage::text(entry.answer.clone())],
        handoff: false,
        candidates,
        why,
        session: None,
    }
}

/// `1`, `2`, `3` (also full-width, already normalized) → index, within the menu's size.
fn menu_choice(text: &str, options: usize) -> Option<usize> {
    let n: usize = text.trim_end_matches(['.', '。']).trim().parse().ok()?;
    (1..=options).contains(&n).then(|| n - 1)
}

/// How a rule came to decide.
enum Chosen<'a> {
    /// It matched the message: its captures fill the replies; an event is never handed off.
    Matched {
        captures: &'a Captures,
        is_event: bool,
    },
    /// It is the default rule, applied because nothing else answered.
    Default,
}

/// The decision a rule makes.
fn from_rule(
    set: &RuleSet,
    rule: &Rule,
    text: &str,
    chosen: Chosen<'_>,
    why: String,
    ctx: &Context,
) -> Decision {
    let no_captures = Captures::new();
    let (captures, is_event, is_default) = match chosen {
        Chosen::Matched { captures, is_event } => (captures, is_event, false),
        Chosen::Default => (&no_captures, false, true),
    };
    let pick = ctx.pick;
    let action = &rule.action;
    let mut replies = Vec::new();
    if let Some(fetch) = &action.fetch {
        // The reply is composed from the backend's answer by whoever makes the call.
        let pick = usize::try_from(pick % action.replies.len().max(1) as u64).unwrap_or(0);
        if let Some(template) = action.replies.get(pick) {
            replies.push(OutboundMessage::Fetch(Box::new(FetchReply {
                rule: rule.id.clone(),
                request: fetch.request(captures, text),
                template: template.clone(),
                fallback: fetch.fallback.clone(),
            })));
        }
    } else if action.reply_all {
        replies.extend(
            action
                .replies
                .iter()
                .map(|t| OutboundMessage::text(render_template(t, captures))),
        );
    } else if !action.replies.is_empty() {
        let pick = usize::try_from(pick % action.replies.len() as u64).unwrap_or(0);
        if let Some(t) = action.replies.get(pick) {
            replies.push(OutboundMessage::text(render_template(t, captures)));
        }
    }
    let mut faq = None;
    if let Some(id) = &action.faq
        && let Some(entry) = set.faq().get(id)
    {
        replies.push(OutboundMessage::text(entry.answer.clone()));
        faq = Some(entry.id.clone());
    }
    replies.extend(action.media.iter().cloned());
    // Events are never transferred to humans (protocol doc §5.1).
    let handoff = action.handoff && !is_event;
    let kind = if is_default {
        Action::Default
    } else if faq.is_some() {
        Action::Faq
    } else if handoff {
        Action::Handoff
    } else {
        Action::Reply
    };
    Decision {
        rule: Some(rule.id.clone()),
        faq,
        action: kind,
        replies,
        handoff,
        candidates: Vec::new(),
        why: if why.is_empty() && ctx.detail == Detail::Explained {
            format!("rule {}", rule.id)
        } else {
            why
        },
        session: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_saturates_instead_of_overflowing() {
        assert_eq!(expiry(100, 60), 160);
        assert_eq!(expiry(100, u64::MAX), i64::MAX);
        assert_eq!(expiry(100, i64::MAX as u64), i64::MAX);
    }

    use crate::protocol::MsgId;
    use crate::rules::SourceFile;

    fn rules(yaml: &str) -> RuleSet {
        let files = [SourceFile {
            path: "r.yaml".into(),
            text: yaml.into(),
        }];
        let report = RuleSet::load_files(
            std::path::Path::new("."),
            &files,
            &crate::faq::FaqSettings::default(),
        );
        report.set.expect("rules load")
    }

    fn msg(kind: MsgKind) -> InboundMessage {
        InboundMessage {
            to_user_name: "gh".into(),
            from_user_name: "u".into(),
            create_time: 1,
            msg_id: Some(MsgId::Number(1)),
            kind,
        }
    }

    fn text(t: &str) -> InboundMessage {
        msg(MsgKind::Text { content: t.into() })
    }

    fn ctx() -> Context {
        // 2026-12-01 10:00 in Shanghai, a Tuesday.
        Context::at_unix(1_796_090_400, chrono_tz::Asia::Shanghai, 30, 600).explained()
    }

    const SET: &str = "rules:
  - id: hello
    keywords: [你好]
    reply: 您好
  - id: first
    default: true
    reply: 我能回答注销问题
  - id: second
    default: true
    misses: 2
    priority: 1
    handoff: true
";

    /// Runs messages through `decide`, carrying the session, and returns each rule (or action).
    fn walk(set: &RuleSet, msgs: &[InboundMessage]) -> Vec<String> {
        let mut session = Session::default();
        msgs.iter()
            .map(|m| {
                let mut d = decide(set, m, &session, &ctx());
                if let Some(next) = d.session.take() {
                    session = next;
                }
                d.rule.unwrap_or_else(|| d.action.as_str().to_string())
            })
            .collect()
    }

    #[test]
    fn consecutive_misses_escalate_and_anything_that_answers_resets_them() {
        let set = rules(SET);
        assert_eq!(
            walk(
                &set,
                &[text("a"), text("你好"), text("b"), text("c"), text("你好")]
            ),
            ["first", "hello", "first", "second", "handoff"]
        );
    }

    #[test]
    fn the_agent_closing_the_session_ends_the_handoff_and_the_misses() {
        let set = rules(SET);
        let close = msg(MsgKind::Event {
            event: "kf_close_session".into(),
            session_from: None,
            event_key: None,
            kf_account: Some("a@gh".into()),
        });
        assert_eq!(
            walk(
                &set,
                &[
                    text("a"),
                    text("b"),
                    text("你好"),
                    close,
                    text("c"),
                    text("你好")
                ]
            ),
            ["first", "second", "handoff", "ignore", "first", "hello"]
        );
    }

    #[test]
    fn a_handoff_that_times_out_leaves_no_misses_behind() {
        let set = rules(SET);
        let mut session = Session::default();
        for t in ["a", "b"] {
            let mut d = decide(&set, &text(t), &session, &ctx());
            session = d.session.take().unwrap_or(session);
        }
        assert!(session.handoff_until.is_some());
        assert_eq!(session.misses, 0, "the handoff took the count");
        // 31 minutes later (what the store hands out: the handoff has expired).
        let later = Context::at_unix(
            ctx().now.timestamp() + 31 * 60,
            ctx().now.timezone(),
            30,
            600,
        );
        let session = session.live(later.now.timestamp());
        let d = decide(&set, &text("c"), &session, &later);
        assert_eq!(
            d.rule.as_deref(),
            Some("first"),
            "a first miss again, not a second"
        );
    }

    #[test]
    fn unknown_types_never_reach_a_default_and_voice_is_read_as_typed() {
        let set = rules(SET);
        let device = msg(MsgKind::Other {
            msg_type: "device_text".into(),
        });
        let d = decide(&set, &device, &Session::default(), &ctx());
        assert_eq!((d.action, d.handoff), (Action::Ignore, false));
        let in_handoff = Session {
            handoff_until: Some(i64::MAX),
            ..Session::default()
        };
        let d = decide(&set, &device, &in_handoff, &ctx());
        assert_eq!((d.action, d.handoff), (Action::Ignore, false));
        let voice = msg(MsgKind::Voice {
            media_id: "m".into(),
            format: "amr".into(),
            recognition: Some("你好。".into()),
        });
        let d = decide(&set, &voice, &Session::default(), &ctx());
        assert_eq!(d.rule.as_deref(), Some("hello"));
    }

    #[test]
    fn menu_choice_accepts_numbers_in_range() {
        assert_eq!(menu_choice("1", 3), Some(0));
        assert_eq!(menu_choice("3。", 3), Some(2));
        assert_eq!(menu_choice("3", 2), None);
        assert_eq!(menu_choice("0", 3), None);
        assert_eq!(menu_choice("一", 3), None);
    }

    /// SPEC §4's order of decision for a text message, one row per step: each row's session and
    /// message are such that every later step would also apply, so the row shows that its step
    /// comes first.
    #[test]
    fn the_order_of_decision() {
        let set = rules(
            "rules:
  - id: high
    priority: 100
    keywords: [转人工]
    handoff: true
    reply: 正在转接
  - id: low
    keywords: [注销]
    reply: 规则的回答
  - id: fallback
    default: true
    reply: 没听懂
faq:
  - id: a
    question: 小程序怎么注销
    answer: 答案A
  - id: b
    question: 公众号怎么迁移
    answer: 答案B
",
        );
        let now = ctx().unix();
        let menu = Session {
            menu: Some(Menu {
                options: vec!["b".into(), "a".into()],
                expires_at: now + 60,
                question: None,
            }),
            ..Session::default()
        };
        let handoff = Session {
            handoff_until: Some(now + 600),
            ..Session::default()
        };
        // (step, session, message, expected action, rule, faq)
        type Row<'a> = (
            &'a str,
            Session,
            &'a str,
            Action,
            Option<&'a str>,
            Option<&'a str>,
        );
        let rows: Vec<Row<'_>> = vec![
            (
                "menu number",
                menu.clone(),
                "1",
                Action::Faq,
                None,
                Some("b"),
            ),
            (
                "menu before handoff",
                Session {
                    handoff_until: handoff.handoff_until,
                    ..menu.clone()
                },
                "2",
                Action::Faq,
                None,
                Some("a"),
            ),
            (
                "handoff before rules",
                handoff.clone(),
                "转人工 注销",
                Action::Handoff,
                None,
                None,
            ),
            (
                "priority among rules",
                Session::default(),
                "转人工 注销",
                Action::Handoff,
                Some("high"),
                None,
            ),
            (
                "a rule before the FAQ",
                Session::default(),
                "小程序怎么注销",
                Action::Reply,
                Some("low"),
                None,
            ),
            (
                "the FAQ before the default",
                Session::default(),
                "公众号怎么迁移",
                Action::Faq,
                None,
                Some("b"),
            ),
            (
                "the default last",
                Session::default(),
                "今天天气",
                Action::Default,
                Some("fallback"),
                None,
            ),
        ];
        for (step, session, text_in, action, rule, faq) in rows {
            let d = decide(&set, &text(text_in), &session, &ctx());
            assert_eq!(
                (d.action, d.rule.as_deref(), d.faq.as_deref()),
                (action, rule, faq),
                "{step}: {}",
                d.why
            );
            assert!(!d.why.is_empty(), "{step}: a tool's decision says why");
            // A push asks for the outcome alone: the same decision, nothing explained.
            let quiet = Context {
                detail: Detail::Outcome,
                ..ctx()
            };
            let push = decide(&set, &text(text_in), &session, &quiet);
            assert_eq!(
                (&push.action, &push.rule, &push.faq, &push.replies),
                (&d.action, &d.rule, &d.faq, &d.replies),
                "{step}"
            );
            assert_eq!(
                (push.handoff, &push.session),
                (d.handoff, &d.session),
                "{step}"
            );
            assert!(push.why.is_empty() && push.candidates.is_empty(), "{step}");
        }
        // And with no default rule: nothing.
        let bare = rules("rules:\n  - id: low\n    keywords: [注销]\n    reply: r\n");
        let d = decide(&bare, &text("今天天气"), &Session::default(), &ctx());
        assert_eq!((d.action, d.replies.len()), (Action::Ignore, 0));
    }

    #[test]
    fn the_reply_pick_is_the_callers() {
        let set = rules("rules:\n  - id: r\n    keywords: [你好]\n    reply: [一, 二, 三]\n");
        let picked = |pick| {
            let d = decide(
                &set,
                &text("你好"),
                &Session::default(),
                &ctx().with_pick(pick),
            );
            d.replies.first().map(|r| r.preview())
        };
        assert_eq!(picked(0), picked(3), "the same pick, the same reply");
        assert_ne!(picked(0), picked(1));
        assert_ne!(picked(1), picked(2));
    }
}
