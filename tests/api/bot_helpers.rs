//! What the rules, reload and FAQ tests need on top of `helpers.rs`: an official-account app
//! (whose first text reply comes back in the HTTP body, so a test reads the bot's answer
//! without a mock API), the answer of a push as the user would see it, the admin `/metrics`,
//! and file edits the way operators and editors make them.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use kefu::protocol::MsgKind;
use kefu::protocol::message::parse_message;

use crate::helpers::{Reply, TestApp, TestAppSpec};

/// How long a change under the rules folder may take to serve (the watcher debounces 200 ms).
pub const RELOAD_WITHIN: Duration = Duration::from_secs(10);

/// A plaintext XML official account: its first text reply is in the response body.
pub fn oa(id: &'static str) -> TestAppSpec {
    TestAppSpec::new(id, "xml", "plaintext").official_account()
}

/// What the user gets from one push, read from the HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `success`: nothing passive (a Mini Program's replies go through the send API).
    Success,
    /// An official account's passive text reply.
    Text(String),
    /// A `transfer_customer_service` message: handed to humans.
    Transfer,
}

impl Answer {
    pub fn text(&self) -> Option<&str> {
        match self {
            Answer::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// Reads a 200 answer; panics (with the body) on anything else.
pub fn answer_of(r: &Reply) -> Answer {
    assert_eq!(r.status, 200, "push refused: {r:?}");
    if r.body == "success" {
        return Answer::Success;
    }
    let (_, msg) = parse_message(r.body.as_bytes())
        .unwrap_or_else(|e| panic!("answer is neither success nor a message ({e}): {r:?}"));
    match msg.kind {
        MsgKind::Text { content } => Answer::Text(content),
        _ if r.body.contains("transfer_customer_service") => Answer::Transfer,
        other => panic!("unexpected answer {other:?}: {r:?}"),
    }
}

impl TestApp {
    /// Posts `text` from `user` and reads the answer.
    pub async fn ask(&self, app: &str, user: &str, text: &str) -> Answer {
        answer_of(&self.post_text(app, user, text).await)
    }

    /// Posts `event` from `user` and reads the answer.
    pub async fn ask_event(&self, app: &str, user: &str, event: &str) -> Answer {
        answer_of(&self.post_event(app, user, event).await)
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let r = self
            .client
            .get(format!("http://127.0.0.1:{}/metrics", self.admin_port))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(r.status().as_u16(), 200);
        r.text().await.expect("metrics body")
    }

    /// `/healthz` `rules.version`.
    pub async fn rules_version(&self) -> u64 {
        self.healthz().await["rules"]["version"]
            .as_u64()
            .expect("rules.version is a number")
    }

    /// Writes a file into the rules folder (in place, as `echo > file` does).
    pub fn write_rules(&self, name: &str, text: &str) {
        std::fs::write(self.rules_dir().join(name), text).expect("write rules file");
    }
}

/// The value of one series (`name{labels}` exactly as rendered) in a Prometheus text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// An editor's atomic save: the new text goes to a temporary file that is then renamed over
/// `path`, so a reader never sees a half-written file.
pub fn save_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.kefu-tmp");
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over");
}

/// A one-rule file: `keywords: [keyword]` answered with `reply`.
pub fn keyword_rule(id: &str, keyword: &str, reply: &str) -> String {
    format!("rules:\n  - id: {id}\n    keywords: [{keyword}]\n    reply: {reply}\n")
}
