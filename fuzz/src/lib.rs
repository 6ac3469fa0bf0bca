//! What the fuzz targets run, kept here so that the seed writer (`tests/seeds.rs`) and the
//! targets share the fixed app (token, key, appid) and the input layouts.
//!
//! The rule of the house checked here: nothing a request can reach panics, and whatever kefu
//! renders from a parsed push (a push for `kefu send`, a passive reply) parses back.

use std::sync::OnceLock;

use kefu::dispatch::{self, Context, Decision};
use kefu::faq::FaqSettings;
use kefu::outbound::OutboundMessage;
use kefu::protocol::crypto::{self, AesKey};
use kefu::protocol::message::{ParseError, parse_envelope, parse_message, render_push};
use kefu::protocol::{Format, InboundMessage, MsgKind, reply, signature};
use kefu::rules::{RuleSet, SourceFile};
use kefu::store::{Menu, PushKey, Session};

/// The fixed app of the `webhook` target: token, key and appid of protocol vector V3.
pub const TOKEN: &str = "AAAAA";
pub const AES_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
/// The key before a rotation, also accepted (V5's key, whose last character has trailing bits).
pub const AES_KEY_PREVIOUS: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const APPID: &str = "wxba5fad812f8e6fb9";

/// The (EncodingAESKey, appid) pairs of the protocol vectors, for the `aes_open` target: the
/// first byte of an input picks one, so that every vector's payload decrypts.
pub const KEYS: &[(&str, &str)] = &[
    (AES_KEY, APPID),                         // V3
    (AES_KEY_PREVIOUS, "wx2c2769f8efd9abc2"), // V5
    (AES_KEY, "wx134c8103faa5a59e"),          // V10
    (
        "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
        "wx49f0ab532d5d035a",
    ), // V8
    (AES_KEY_PREVIOUS, "wxb11529c136998cb6"), // V6, V7
    (
        "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        "wx5823bf96d3bd56c7",
    ), // V9
];

/// A key of [`KEYS`] or of the fixed app; the constants are valid keys.
pub fn key(encoding_aes_key: &str) -> AesKey {
    AesKey::parse(encoding_aes_key).unwrap_or_else(|_| AesKey::from_bytes([0; 32]))
}

// ── Targets 1 and 2: a plaintext push ─────────────────────────────────────────────────────────

/// Parses `data` as the webhook does (envelope and message) and checks what kefu renders from
/// the message: the push itself (`kefu send`) and the passive replies that carry its fields.
/// `only` skips bodies of the other format, so that each target stays on its parser.
pub fn push(data: &[u8], only: Format) {
    if kefu::protocol::message::detect_format(data) != Some(only) {
        return;
    }
    let _ = parse_envelope(data);
    let _ = reply::parse_encrypted(data);
    let Ok((format, msg)) = parse_message(data) else {
        return;
    };
    let _ = PushKey::of("app", &msg);
    let _ = dispatch::quota_trigger(&msg);
    check_render(format, &msg);
    check_replies(format, &msg);
}

/// `render_push` of a parsed push parses back to the same message, and rendering is stable.
/// The only loss allowed: XML cannot carry some characters (control characters, U+FFFE…),
/// which the parser lets through and the renderer drops; a message holding some changes on its
/// first trip (a required field made only of them goes missing), and is stable after it.
pub fn check_render(format: Format, msg: &InboundMessage) {
    let once = render_push(format, msg);
    match parse_message(once.as_bytes()) {
        Ok((again_format, again)) => {
            assert_eq!(again_format, format);
            if format == Format::Json || strings(msg).all(|s| s.chars().all(is_xml_char)) {
                assert_eq!(
                    &again, msg,
                    "a push changes through render and parse:\n{once}"
                );
            }
            let twice = render_push(format, &again);
            let (_, third) = parse_message(twice.as_bytes())
                .unwrap_or_else(|e| panic!("a rendered push does not parse back: {e}\n{twice}"));
            assert_eq!(third, again, "rendering is not stable:\n{twice}");
        }
        Err(ParseError::MissingField(_)) if format == Format::Xml => {}
        Err(e) => panic!("a rendered push does not parse back: {e}\n{once}"),
    }
}

/// Every text field of a message.
fn strings(msg: &InboundMessage) -> impl Iterator<Item = &str> {
    let mut out = vec![msg.to_user_name.as_str(), msg.from_user_name.as_str()];
    if let Some(kefu::protocol::MsgId::Text(t)) = &msg.msg_id {
        out.push(t);
    }
    match &msg.kind {
        MsgKind::Text { content } => out.push(content),
        MsgKind::Image { pic_url, media_id } => out.extend([pic_url.as_str(), media_id]),
        MsgKind::Voice {
            media_id,
            format,
            recognition,
        } => {
            out.extend([media_id.as_str(), format]);
            out.extend(recognition.as_deref());
        }
        MsgKind::MiniProgramPage {
            title,
            app_id,
            page_path,
            thumb_url,
            thumb_media_id,
        } => out.extend([title.as_str(), app_id, page_path, thumb_url, thumb_media_id]),
        MsgKind::Event {
            event,
            session_from,
            event_key,
            kf_account,
        } => {
            out.push(event);
            out.extend(session_from.as_deref());
            out.extend(event_key.as_deref());
            out.extend(kf_account.as_deref());
        }
        MsgKind::Other { msg_type } => out.push(msg_type),
    }
    out.into_iter()
}

/// The passive replies built from a push's fields parse as the documents they claim to be.
pub fn check_replies(format: Format, msg: &InboundMessage) {
    let openid = msg.from_user_name.as_str();
    let original_id = msg.to_user_name.as_str();
    let transfer = reply::transfer(format, openid, original_id, msg.create_time);
    reparse(&transfer, "transfer_customer_service");
    let content = match &msg.kind {
        MsgKind::Text { content } => content.as_str(),
        _ => "",
    };
    let text = reply::text(openid, original_id, msg.create_time, content);
    reparse(&text, "text");
}

fn reparse(body: &str, msg_type: &str) {
    match parse_message(body.as_bytes()) {
        Ok((_, m)) => assert_eq!(m.kind.type_name(), msg_type, "{body}"),
        // An openid or original id made only of characters XML cannot carry.
        Err(ParseError::MissingField(_)) => {}
        Err(e) => panic!("a reply does not parse back: {e}\n{body}"),
    }
}

// ── Target 3: the AES envelope ────────────────────────────────────────────────────────────────

/// `data[0]`: bit 7 chooses the layout of the rest, the low bits a pair of [`KEYS`].
///
/// - bit 7 clear: the rest is a body (a safe-mode envelope or a compatible-mode push, either
///   format); its `Encrypt` is opened with the pair's key (the other keys as "previous") and the
///   plaintext parsed, as the webhook does; the rest is also tried as a bare `Encrypt` text.
/// - bit 7 set: the rest is the plaintext *inside* the cipher (random16, length, message,
///   appid, padding) as the fuzzer wrote it, encrypted here without any padding, so that the
///   fuzzer reaches every padding and length check of `decrypt` directly; an opened payload is
///   parsed as the webhook would. The same bytes also go through `encrypt` → `decrypt`, which
///   must give them back.
pub fn aes_open(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (encoding_aes_key, appid) = KEYS[usize::from(selector & 0x7f) % KEYS.len()];
    let keys: Vec<AesKey> = std::iter::once(key(encoding_aes_key))
        .chain(KEYS.iter().map(|(k, _)| key(k)))
        .collect();
    if selector & 0x80 == 0 {
        if let Ok(envelope) = parse_envelope(rest)
            && let Some(encrypt) = envelope.encrypt
        {
            let _ = crypto::msg_signature(TOKEN, "1714112445", "415670741", &encrypt);
            if let Ok((_, plain)) = crypto::decrypt_with_any(&keys, &encrypt, appid)
                && let Ok((format, msg)) = parse_message(&plain)
            {
                check_render(format, &msg);
            }
        }
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = crypto::decrypt_with_any(&keys, text, appid);
        }
        return;
    }

    let key = &keys[0];
    // Whole 32-byte blocks, as a ciphertext must be; the tail is dropped.
    let plain = &rest[..rest.len() - rest.len() % 32];
    if !plain.is_empty() {
        let encrypt = raw_encrypt(key, plain);
        let opened = crypto::decrypt(key, &encrypt, appid).ok();
        assert_eq!(opened, expected_open(plain, appid), "{plain:?}");
        // What the webhook does next with an opened payload.
        if let Some(payload) = opened
            && let Ok((format, msg)) = parse_message(&payload)
        {
            check_render(format, &msg);
        }
    }
    let random: [u8; 16] = core::array::from_fn(|i| rest.get(i).copied().unwrap_or(0));
    let sealed = crypto::encrypt(key, rest, appid, &random);
    assert_eq!(
        crypto::decrypt(key, &sealed, appid).as_deref(),
        Ok(rest),
        "encrypt then decrypt"
    );
}

/// AES-256-CBC with the key's first 16 bytes as IV and no padding: `plain` exactly as given.
pub fn raw_encrypt(key: &AesKey, plain: &[u8]) -> String {
    use aes::cipher::generic_array::GenericArray;
    use aes::cipher::{BlockEncryptMut, KeyIvInit};
    use base64::Engine as _;
    let bytes = key.bytes();
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&bytes[..16]);
    let mut cipher = cbc::Encryptor::<aes::Aes256>::new(bytes.into(), &iv.into());
    let mut buf = plain.to_vec();
    for block in buf.chunks_exact_mut(16) {
        cipher.encrypt_block_mut(GenericArray::from_mut_slice(block));
    }
    base64::engine::general_purpose::STANDARD.encode(&buf)
}

/// What `decrypt` must answer for a plaintext, computed independently from doc §3.4: PKCS#7
/// over 32 (1..=32 equal bytes), then `random16 ‖ u32_be(len) ‖ msg ‖ appid` exactly.
pub fn expected_open(plain: &[u8], appid: &str) -> Option<Vec<u8>> {
    let pad = *plain.last()?;
    if !(1..=32).contains(&pad) || usize::from(pad) > plain.len() {
        return None;
    }
    let (body, padding) = plain.split_at(plain.len() - usize::from(pad));
    if padding.iter().any(|&b| b != pad) || body.len() < 20 {
        return None;
    }
    let len = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
    let rest = &body[20..];
    if len > rest.len() || &rest[len..] != appid.as_bytes() {
        return None;
    }
    Some(rest[..len].to_vec())
}

// ── Target 4: the whole webhook request ───────────────────────────────────────────────────────

/// The query of a push, as `src/http/webhook.rs` reads it.
#[derive(Debug, Default, serde::Deserialize)]
struct PushQuery {
    signature: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    echostr: Option<String>,
    encrypt_type: Option<String>,
    msg_signature: Option<String>,
}

/// A query value the harness replaces with the right signature, so that the fuzzer gets past
/// the signature checks; any other value is checked as sent (and refused).
pub const AUTO: &str = "auto";

/// The app's encryption mode, as in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plaintext,
    Compatible,
    Safe,
}

/// The first byte of a `webhook` input (the rest: the query string, a newline, the body).
#[derive(Debug, Clone, Copy)]
pub struct Flags(pub u8);

impl Flags {
    /// Bits 0–1: the app's mode (3 is safe too).
    pub fn mode(self) -> Mode {
        match self.0 & 0b11 {
            0 => Mode::Plaintext,
            1 => Mode::Compatible,
            _ => Mode::Safe,
        }
    }
    /// Bit 2: a GET (URL verification) rather than a POST.
    pub fn get(self) -> bool {
        self.0 & 0b100 != 0
    }
    /// Bit 3: the body is the plaintext push; the harness encrypts it with the app's key and
    /// wraps it in an envelope of the same format (with `encrypt_type=aes` in the query).
    pub fn seal(self) -> bool {
        self.0 & 0b1000 != 0
    }
    /// Bit 4: an official account (answers its first text passively).
    pub fn official_account(self) -> bool {
        self.0 & 0b1_0000 != 0
    }
    /// Bits 5–7: the user's session before the push (see `session`), and the clock: [`NOW`]
    /// plus 7 hours times this number, so that the schedules of the rules come into play.
    pub fn session(self) -> u8 {
        self.0 >> 5
    }
}

/// The first second of the harness's clock: V3's timestamp (a Friday, 14:20 in Shanghai).
pub const NOW: i64 = 1714112445;
/// The window of `max_timestamp_skew_secs` (its default).
pub const SKEW: u64 = 300;

/// The rules of the repository (`rules/`), compiled once.
pub fn rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| {
        let files = [
            (
                "rules/00-service.yaml",
                include_str!("../../rules/00-service.yaml"),
            ),
            (
                "rules/faq/deregistration.yaml",
                include_str!("../../rules/faq/deregistration.yaml"),
            ),
        ]
        .map(|(path, text)| SourceFile {
            path: path.into(),
            text: text.into(),
        });
        let report = RuleSet::load_files("rules".as_ref(), &files, &FaqSettings::default());
        match report.set {
            Some(set) => set,
            None => panic!(
                "the repository's rules do not load: {:?}",
                report.diagnostics
            ),
        }
    })
}

/// What the webhook would do with the request: an answer body, or the refusal.
#[derive(Debug)]
pub enum Outcome {
    Refused(&'static str),
    Echo(String),
    Answered {
        decision: Box<Decision>,
        body: String,
    },
}

/// One request through the steps of `webhook::handle`, in its order (SPEC §3): parameters,
/// timestamp window, signature, mode, envelope, `msg_signature`, decryption, message; then the
/// decision on the repository's rules and the answer, as `webhook::process`/`answer` build it
/// (without the store: the session comes from the flags).
///
/// Input: `flags ‖ query ‖ '\n' ‖ body`; see [`Flags`] and [`AUTO`].
pub fn webhook(data: &[u8]) -> Outcome {
    let Some((&flags, rest)) = data.split_first() else {
        return Outcome::Refused("empty input");
    };
    let flags = Flags(flags);
    let (query, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let query = String::from_utf8_lossy(query);
    let parsed = actix_web::web::Query::<PushQuery>::from_query(&query)
        .map(actix_web::web::Query::into_inner)
        .unwrap_or_default();
    let hour = i64::from(flags.session()) * 7 * 3600;
    handle(flags, parsed, body, NOW + hour)
}

fn handle(flags: Flags, mut query: PushQuery, body: &[u8], now: i64) -> Outcome {
    let keys = [key(AES_KEY), key(AES_KEY_PREVIOUS)];
    let is_get = flags.get();
    let Some(timestamp) = query.timestamp.clone() else {
        return Outcome::Refused("missing timestamp");
    };
    let Some(nonce) = query.nonce.clone() else {
        return Outcome::Refused("missing nonce");
    };
    if query.signature.as_deref() == Some(AUTO) {
        query.signature = Some(signature::sign(&[TOKEN, &timestamp, &nonce]));
    }
    let Some(sig) = query.signature.as_deref() else {
        return Outcome::Refused("missing signature");
    };

    // The body the fuzzer wrote, or an envelope around it.
    let mut sealed_body = None;
    if flags.seal() && !is_get {
        let random: [u8; 16] = core::array::from_fn(|i| body.get(i).copied().unwrap_or(7));
        let encrypt = crypto::encrypt(&keys[0], body, APPID, &random);
        let format = kefu::protocol::message::detect_format(body).unwrap_or(Format::Xml);
        sealed_body = Some(kefu::protocol::message::render_envelope(
            format, "gh_fuzz", &encrypt,
        ));
        query.encrypt_type = Some("aes".into());
        query.msg_signature.get_or_insert_with(|| AUTO.into());
    }
    let body = sealed_body.as_deref().map_or(body, str::as_bytes);

    let encrypted = query.encrypt_type.as_deref() == Some("aes");
    if is_get && query.echostr.is_none() {
        return Outcome::Refused("missing echostr");
    }
    let msg_signature = match (!is_get && encrypted, query.msg_signature.as_deref()) {
        (false, _) => None,
        (true, None) => return Outcome::Refused("missing msg_signature"),
        (true, Some(s)) => Some(s),
    };
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return Outcome::Refused("bad timestamp");
    };
    if now.abs_diff(ts) > SKEW {
        return Outcome::Refused("stale timestamp");
    }
    if !signature::verify(sig, &[TOKEN, &timestamp, &nonce]) {
        return Outcome::Refused("bad signature");
    }
    if is_get {
        return Outcome::Echo(query.echostr.unwrap_or_default());
    }
    match (flags.mode(), encrypted) {
        (Mode::Safe, false) => return Outcome::Refused("plaintext refused"),
        (Mode::Plaintext, true) => return Outcome::Refused("encrypted refused"),
        _ => {}
    }

    let (format, key_index, msg) = match msg_signature {
        Some(msg_sig) => {
            let Ok(outer) = parse_envelope(body) else {
                return Outcome::Refused("bad envelope");
            };
            let Some(encrypt) = outer.encrypt else {
                return Outcome::Refused("no Encrypt");
            };
            let expected;
            let msg_sig = if msg_sig == AUTO {
                expected = crypto::msg_signature(TOKEN, &timestamp, &nonce, &encrypt);
                expected.as_str()
            } else {
                msg_sig
            };
            if !signature::verify(msg_sig, &[TOKEN, &timestamp, &nonce, &encrypt]) {
                return Outcome::Refused("bad msg_signature");
            }
            let Ok((key_index, plain)) = crypto::decrypt_with_any(&keys, &encrypt, APPID) else {
                return Outcome::Refused("bad payload");
            };
            let Ok((_, msg)) = parse_message(&plain) else {
                return Outcome::Refused("bad message");
            };
            (outer.format, Some(key_index), msg)
        }
        None => {
            let Ok((format, msg)) = parse_message(body) else {
                return Outcome::Refused("bad message");
            };
            (format, None, msg)
        }
    };
    process(flags, format, key_index, &nonce, &msg, &keys, now)
}

/// `webhook::process` and `webhook::answer` without the store.
fn process(
    flags: Flags,
    format: Format,
    key_index: Option<usize>,
    nonce: &str,
    msg: &InboundMessage,
    keys: &[AesKey],
    now: i64,
) -> Outcome {
    let _ = PushKey::of("fuzz", msg);
    let session = session(flags.session(), now);
    let ctx = Context::at_unix(
        now,
        chrono_tz::Asia::Shanghai,
        30,
        FaqSettings::default().menu_ttl_secs,
    );
    let set = rules();
    let mut decision = dispatch::decide(set, msg, &session, &ctx);
    let _ = dispatch::quota_trigger(msg);
    check_decision(set, msg, &decision, now);

    let mut outbox = std::mem::take(&mut decision.replies);
    let openid = msg.from_user_name.as_str();
    let original_id = msg.to_user_name.as_str();
    let plain = if decision.handoff {
        Some((reply::transfer(format, openid, original_id, now), format))
    } else if flags.official_account()
        && matches!(outbox.first(), Some(OutboundMessage::Text { .. }))
    {
        match outbox.remove(0) {
            OutboundMessage::Text { content } => {
                Some((reply::text(openid, original_id, now, &content), Format::Xml))
            }
            _ => None,
        }
    } else {
        None
    };
    let body = match plain {
        None => reply::SUCCESS.to_string(),
        Some((body, inner_format)) => {
            // The reply goes to the sender, whatever characters XML had to drop from the openid.
            if inner_format == Format::Xml
                && let Ok((_, back)) = parse_message(body.as_bytes())
            {
                assert_eq!(back.to_user_name, openid.replace(|c| !is_xml_char(c), ""));
            }
            match key_index.and_then(|i| keys.get(i)) {
                Some(key) => {
                    let sealed =
                        crypto::seal(key, APPID, TOKEN, body.as_bytes(), now, nonce, &[5; 16]);
                    let out = reply::encrypted(format, &sealed);
                    // What `kefu send` (and WeChat) reads back.
                    match reply::parse_encrypted(out.as_bytes()) {
                        Ok(back) => assert_eq!(back.encrypt, sealed.encrypt),
                        Err(e) => panic!("an encrypted reply does not parse back: {e}\n{out}"),
                    }
                    out
                }
                None => body,
            }
        }
    };
    Outcome::Answered {
        decision: Box::new(decision),
        body,
    }
}

/// What SPEC §4 promises of every decision, whatever the message.
fn check_decision(set: &RuleSet, msg: &InboundMessage, decision: &Decision, now: i64) {
    let is_event = matches!(msg.kind, MsgKind::Event { .. });
    // Events are never transferred to humans (protocol doc §5.1).
    assert!(
        !(is_event && decision.handoff),
        "an event was handed off: {decision:?}"
    );
    if decision.handoff {
        // A handoff sticks: the session after it says until when.
        let until = decision.session.as_ref().and_then(|s| s.handoff_until);
        assert!(
            until.is_some_and(|u| u > now),
            "a handoff that does not stick: {decision:?}"
        );
    }
    if decision.action == dispatch::Action::Clarify {
        let options = decision.session.as_ref().and_then(|s| s.menu.as_ref());
        assert!(
            options.is_some_and(|m| (1..=3).contains(&m.options.len()) && m.expires_at > now),
            "a clarify menu without a live menu of 1 to 3 options: {decision:?}"
        );
        assert_eq!(decision.replies.len(), 1, "{decision:?}");
    }
    // Whatever decided exists in the rule set.
    if let Some(rule) = &decision.rule {
        assert!(set.rule(rule).is_some(), "unknown rule {rule}");
    }
    if let Some(faq) = &decision.faq {
        assert!(set.faq().get(faq).is_some(), "unknown FAQ entry {faq}");
    }
}

fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// The user's session before the push: none, a live or expired menu of the first FAQ entries,
/// a live or expired handoff.
fn session(choice: u8, now: i64) -> Session {
    let options: Vec<String> = rules()
        .faq()
        .entries()
        .iter()
        .take(3)
        .map(|e| e.id.clone())
        .collect();
    let menu = |expires_at| Menu {
        options: options.clone(),
        expires_at,
        question: Some("注销".into()),
    };
    match choice {
        1 => Session {
            menu: Some(menu(now + 60)),
            handoff_until: None,
            ..Session::default()
        },
        2 => Session {
            menu: Some(menu(now - 1)),
            handoff_until: None,
            ..Session::default()
        },
        3 => Session {
            menu: None,
            handoff_until: Some(now + 600),
            ..Session::default()
        },
        4 => Session {
            menu: None,
            handoff_until: Some(now - 1),
            ..Session::default()
        },
        5 => Session {
            menu: Some(menu(now + 60)),
            handoff_until: Some(now + 600),
            ..Session::default()
        },
        _ => Session::default(),
    }
}
