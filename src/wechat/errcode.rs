//! WeChat's `errcode`s and what kefu does about each (protocol doc §7.3).
//!
//! Pure tables, no I/O: the client asks here whether an answer means "sent", "try again later",
//! "refresh the token and try once more" or "give up". Unknown non-zero codes give up: retrying
//! a code we do not understand risks hammering WeChat for something that cannot succeed, and the
//! outbox keeps the errcode and errmsg for an operator to read.

/// The errcode kefu reports in [`super::SendOutcome::Failed`] when WeChat gave none: an HTTP 4xx
/// or 3xx, an app missing from the config, a body that could not be built. WeChat's own codes
/// are 0, -1 and five-digit positives, so -2 cannot be mistaken for one of them.
pub const NOT_FROM_WECHAT: i64 = -2;

/// What a `custom/send` answer means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendClass {
    /// errcode 0: WeChat took it.
    Accepted,
    /// Transient on WeChat's side: send again later, with backoff.
    Retry,
    /// The access token was refused (40001, 40014, 42001): refresh it and send again once.
    TokenRejected,
    /// Retrying cannot help.
    Failed,
}

/// Classifies the errcode of a `custom/send` answer (HTTP 200).
///
/// | code | meaning | class |
/// |---|---|---|
/// | 0 | ok | Accepted |
/// | -1 | system busy | Retry |
/// | 45011 | API called too often | Retry |
/// | 40001, 40014, 42001 | token invalid, not latest, or expired | TokenRejected |
/// | 40003 | openid invalid (wrong app, or an OA user not following) | Failed |
/// | 41001 | access token missing (a kefu bug) | Failed |
/// | 43004 | OA: the user does not follow | Failed |
/// | 45002 | content too long (the dispatcher splits texts; this one slipped through) | Failed |
/// | 45008 | news with more than one article (a bug) | Failed |
/// | 45009 | daily API quota used up; resets the next day | Failed |
/// | 45015 | reply window closed (48 h after the user's last message) | Failed |
/// | 45047 | out of the per-user message count | Failed |
/// | 48001 | no permission for this API | Failed |
/// | any other | unknown | Failed |
pub fn classify_send(errcode: i64) -> SendClass {
    match errcode {
        0 => SendClass::Accepted,
        -1 | 45011 => SendClass::Retry,
        c if is_token_error(c) => SendClass::TokenRejected,
        _ => SendClass::Failed,
    }
}

/// The codes on which WeChat SDKs (wechatpy, WxJava) refresh the token and call again.
pub fn is_token_error(errcode: i64) -> bool {
    matches!(errcode, 40001 | 40014 | 42001)
}

/// What a `stable_token` answer's errcode means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenClass {
    /// Transient (-1 system busy, 45011 too frequent): the send is retried later.
    Retry,
    /// The app's configuration is wrong and nothing will work until an operator fixes it:
    /// 40001 / 40125 (wrong AppSecret), 40013 (invalid appid), 40243 (AppSecret frozen),
    /// 40164 (this server's IP is not on the token API's allow-list).
    Config,
    /// Anything else (for instance 45009, the daily quota): give up on this send.
    Failed,
}

/// Classifies the non-zero errcode of a `stable_token` answer.
pub fn classify_token_fetch(errcode: i64) -> TokenClass {
    match errcode {
        -1 | 45011 => TokenClass::Retry,
        40001 | 40013 | 40125 | 40164 | 40243 => TokenClass::Config,
        _ => TokenClass::Failed,
    }
}

/// A short English meaning of a known errcode, for the reasons kefu records and logs.
pub fn meaning(errcode: i64) -> &'static str {
    match errcode {
        0 => "ok",
        -1 => "WeChat system busy",
        40001 => "access token invalid or not the latest (or, on the token API, wrong AppSecret)",
        40003 => "invalid openid for this app",
        40013 => "invalid appid",
        40014 => "invalid access token",
        40125 => "invalid AppSecret",
        40164 => "this server's IP is not on the app's API allow-list",
        40243 => "AppSecret frozen",
        41001 => "access token missing",
        42001 => "access token expired",
        43004 => "the user does not follow the official account",
        45002 => "message content too long",
        45008 => "news message has more than one article",
        45009 => "daily API quota reached",
        45011 => "API called too often",
        45015 => "reply window expired (48 h after the user's last message)",
        45047 => "per-user message count used up until the user writes again",
        48001 => "no permission for this API",
        _ => "unknown errcode",
    }
}

/// `"<meaning> (errcode N: errmsg)"`, the reason recorded with an outcome.
pub fn reason(errcode: i64, errmsg: &str) -> String {
    let errmsg = errmsg.trim();
    if errmsg.is_empty() {
        format!("{} (errcode {errcode})", meaning(errcode))
    } else {
        format!("{} (errcode {errcode}: {errmsg})", meaning(errcode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_codes_are_classified_per_protocol_table() {
        let table: &[(i64, SendClass)] = &[
            (0, SendClass::Accepted),
            (-1, SendClass::Retry),
            (45011, SendClass::Retry),
            (40001, SendClass::TokenRejected),
            (40014, SendClass::TokenRejected),
            (42001, SendClass::TokenRejected),
            (40003, SendClass::Failed),
            (41001, SendClass::Failed),
            (43004, SendClass::Failed),
            (45002, SendClass::Failed),
            (45008, SendClass::Failed),
            (45009, SendClass::Failed),
            (45015, SendClass::Failed),
            (45047, SendClass::Failed),
            (48001, SendClass::Failed),
            (12345, SendClass::Failed),
            (-99, SendClass::Failed),
        ];
        for &(code, class) in table {
            assert_eq!(classify_send(code), class, "errcode {code}");
        }
    }

    #[test]
    fn token_fetch_codes_are_classified() {
        for code in [40001, 40013, 40125, 40164, 40243] {
            assert_eq!(classify_token_fetch(code), TokenClass::Config, "{code}");
        }
        for code in [-1, 45011] {
            assert_eq!(classify_token_fetch(code), TokenClass::Retry, "{code}");
        }
        assert_eq!(classify_token_fetch(45009), TokenClass::Failed);
        assert_eq!(classify_token_fetch(99999), TokenClass::Failed);
    }

    #[test]
    fn reason_names_meaning_code_and_errmsg() {
        assert_eq!(
            reason(45015, "response out of time limit rid: 1"),
            "reply window expired (48 h after the user's last message) \
             (errcode 45015: response out of time limit rid: 1)"
        );
        assert_eq!(reason(99999, " "), "unknown errcode (errcode 99999)");
    }
}
