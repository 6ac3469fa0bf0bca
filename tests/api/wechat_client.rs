//! The WeChat API client against the mock: one test per outcome class (protocol doc §7.3), the
//! token cache under concurrency, token expiry on a manual clock, and dry-run.

use std::path::Path;
use std::time::{Duration, Instant};

use kefu::config::AppConfig;
use kefu::outbound::OutboundMessage;
use kefu::wechat::errcode::NOT_FROM_WECHAT;
use kefu::wechat::{ClientOptions, Clock, Deliver, ManualClock, SendOutcome, WechatClient};
use serde_json::json;

use crate::mock_wechat::{MockGate, MockReply, MockWechat};

/// `demo` and `second` send for real; `dry` is dry-run; `nosecret` is dry-run for lack of a
/// secret.
const APPS: &str = r#"
apps:
  - id: demo
    appid: wx-demo
    secret: s3cret
    token: t
  - id: second
    appid: wx-second
    secret: other-secret
    token: t
  - id: dry
    appid: wx-dry
    secret: s3cret
    token: t
    dry_run: true
  - id: nosecret
    appid: wx-nosecret
    token: t
"#;

fn apps() -> Vec<AppConfig> {
    kefu::config::parse(APPS, Path::new("test.yaml"), &|_| None)
        .unwrap()
        .apps
}

/// A mock and a client pointed at it.
struct Harness {
    mock: MockWechat,
    client: WechatClient,
}

impl Harness {
    async fn start() -> Self {
        Self::with(ClientOptions {
            request_timeout: Duration::from_secs(3),
            ..ClientOptions::default()
        })
        .await
    }

    async fn with(options: ClientOptions) -> Self {
        let mock = MockWechat::start().await;
        let client = WechatClient::new(&mock.base_url(), &apps(), options).unwrap();
        Self { mock, client }
    }

    async fn send(&self, app: &str) -> SendOutcome {
        self.client
            .deliver(app, &"o-user".into(), &OutboundMessage::text("hello"))
            .await
    }

    fn tokens_sent(&self) -> Vec<String> {
        self.mock
            .sends()
            .into_iter()
            .map(|s| s.access_token)
            .collect()
    }

    fn force_flags(&self) -> Vec<bool> {
        self.mock
            .token_requests()
            .iter()
            .map(|r| r["force_refresh"].as_bool().unwrap())
            .collect()
    }
}

fn assert_failed(outcome: &SendOutcome, code: i64) {
    match outcome {
        SendOutcome::Failed { errcode, .. } => assert_eq!(*errcode, code, "{outcome:?}"),
        other => panic!("expected Failed({code}), got {other:?}"),
    }
}

/// Retried later: a clean retry, or one whose request may have reached WeChat (`Unknown`).
fn assert_retry(outcome: &SendOutcome, reason_has: &str) {
    match outcome {
        SendOutcome::Retry { reason } | SendOutcome::Unknown { reason } => {
            assert!(reason.contains(reason_has), "{reason}")
        }
        other => panic!("expected Retry ({reason_has}), got {other:?}"),
    }
}

#[tokio::test]
async fn errcode_0_is_accepted_and_the_body_is_raw_utf8_json() {
    let h = Harness::start().await;
    let content = "您好 <a href=\"https://example.com/?a=1&b=2\">链接</a> 😀";
    let outcome = h
        .client
        .deliver("demo", &"o-user".into(), &OutboundMessage::text(content))
        .await;
    assert_eq!(outcome, SendOutcome::Accepted);

    let sends = h.mock.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].access_token, "tok-1");
    assert_eq!(
        sends[0].body,
        json!({"touser": "o-user", "msgtype": "text", "text": {"content": content}})
    );
    assert!(sends[0].raw.contains("您好 <a href="), "{}", sends[0].raw);
    assert!(sends[0].raw.contains("?a=1&b=2"), "{}", sends[0].raw);
    assert!(!sends[0].raw.contains("\\u"), "{}", sends[0].raw);
    assert_eq!(sends[0].content_type, "application/json; charset=utf-8");
    assert_eq!(
        h.mock.token_requests(),
        [
            json!({"grant_type": "client_credential", "appid": "wx-demo",
                "secret": "s3cret", "force_refresh": false})
        ]
    );
}

#[tokio::test]
async fn every_message_kind_gets_its_protocol_body() {
    let h = Harness::start().await;
    let cases = [
        (
            OutboundMessage::Image {
                media_id: "MEDIA".into(),
            },
            json!({"touser": "o1", "msgtype": "image", "image": {"media_id": "MEDIA"}}),
        ),
        (
            OutboundMessage::Link {
                title: "T".into(),
                description: "D".into(),
                url: "https://u".into(),
                thumb_url: "https://p".into(),
            },
            json!({"touser": "o1", "msgtype": "link", "link": {"title": "T", "description": "D",
                   "url": "https://u", "thumb_url": "https://p"}}),
        ),
        (
            OutboundMessage::MiniProgramPage {
                title: "T".into(),
                pagepath: "pages/index/index?foo=bar".into(),
                thumb_media_id: "THUMB".into(),
            },
            json!({"touser": "o1", "msgtype": "miniprogrampage", "miniprogrampage":
                   {"title": "T", "pagepath": "pages/index/index?foo=bar",
                    "thumb_media_id": "THUMB"}}),
        ),
    ];
    for (message, expected) in &cases {
        assert_eq!(
            h.client.deliver("demo", &"o1".into(), message).await,
            SendOutcome::Accepted
        );
        assert_eq!(h.mock.sends().last().unwrap().body, *expected);
    }
    assert_eq!(h.mock.token_fetches(), 1, "the token is cached");
}

#[tokio::test]
async fn errcode_minus_1_and_45011_are_retried_later_not_resent_now() {
    let h = Harness::start().await;
    for (n, code) in [-1, 45011].into_iter().enumerate() {
        h.mock.script_send(vec![MockReply::errcode(code)]);
        assert_retry(&h.send("demo").await, &format!("errcode {code}"));
        assert_eq!(h.mock.sends().len(), n + 1, "one POST per delivery");
    }
    assert_eq!(h.mock.token_fetches(), 1);
}

#[tokio::test]
async fn errcodes_that_cannot_succeed_fail_with_their_code() {
    let h = Harness::start().await;
    let codes = [
        45015, 45047, 40003, 43004, 48001, 45009, 45002, 45008, 41001, 99999,
    ];
    for (n, code) in codes.into_iter().enumerate() {
        h.mock.script_send(vec![MockReply::errcode(code)]);
        assert_failed(&h.send("demo").await, code);
        assert_eq!(h.mock.sends().len(), n + 1, "no resend for {code}");
    }
    assert_eq!(h.mock.token_fetches(), 1, "no token refresh for these");
}

#[tokio::test]
async fn token_errors_refresh_once_then_resend() {
    for code in [40001, 40014, 42001] {
        let h = Harness::start().await;
        h.mock.script_send(vec![MockReply::errcode(code)]);
        assert_eq!(
            h.send("demo").await,
            SendOutcome::Accepted,
            "errcode {code}"
        );
        assert_eq!(h.tokens_sent(), ["tok-1", "tok-2"], "errcode {code}");
        assert_eq!(h.force_flags(), [false, false], "errcode {code}");
    }
}

#[tokio::test]
async fn refreshed_token_refused_again_retries_later_with_one_rate_limited_force_refresh() {
    let h = Harness::start().await;
    h.mock.reject_token("tok-1", 40001);
    h.mock.reject_token("tok-2", 42001);
    assert_retry(&h.send("demo").await, "refused twice");
    assert_eq!(h.tokens_sent(), ["tok-1", "tok-2"], "never in a loop");

    // The next delivery forces a new token.
    assert_eq!(h.send("demo").await, SendOutcome::Accepted);
    assert_eq!(h.force_flags(), [false, false, true]);

    // The same again within force_refresh_min_interval: normal mode only.
    h.mock.reject_token("tok-3", 40001);
    h.mock.reject_token("tok-4", 40001);
    assert_retry(&h.send("demo").await, "refused twice");
    assert_eq!(h.send("demo").await, SendOutcome::Accepted);
    assert_eq!(h.force_flags(), [false, false, true, false, false]);
    assert_eq!(h.tokens_sent().last().unwrap(), "tok-5");
}

#[tokio::test]
async fn token_config_errors_fail_without_sending() {
    for code in [40013, 40125, 40243, 40164, 40001] {
        let h = Harness::start().await;
        h.mock.script_token(vec![MockReply::errcode(code)]);
        let outcome = h.send("demo").await;
        assert_failed(&outcome, code);
        let SendOutcome::Failed { reason, .. } = outcome else {
            unreachable!()
        };
        assert!(reason.contains("secret"), "{reason}");
        assert!(
            !reason.contains("s3cret"),
            "the secret never leaks: {reason}"
        );
        assert!(h.mock.sends().is_empty());
    }
}

#[tokio::test]
async fn transient_token_errors_are_retried_later() {
    let h = Harness::start().await;
    h.mock.script_token(vec![
        MockReply::errcode(-1),
        MockReply::http(500),
        MockReply::raw("<html>proxy</html>"),
    ]);
    assert_retry(&h.send("demo").await, "errcode -1");
    assert_retry(&h.send("demo").await, "HTTP 500");
    assert_retry(&h.send("demo").await, "unreadable");
    assert!(h.mock.sends().is_empty());
    assert_eq!(h.send("demo").await, SendOutcome::Accepted);
    assert_eq!(h.tokens_sent(), ["tok-1"]);
}

#[tokio::test]
async fn http_statuses_on_send() {
    let h = Harness::start().await;
    h.mock.script_send(vec![
        MockReply::http(500),
        MockReply::http(503),
        MockReply::http(403),
        MockReply::http(404),
        MockReply::raw("not json"),
    ]);
    assert_retry(&h.send("demo").await, "HTTP 500");
    assert_retry(&h.send("demo").await, "HTTP 503");
    assert_failed(&h.send("demo").await, NOT_FROM_WECHAT);
    assert_failed(&h.send("demo").await, NOT_FROM_WECHAT);
    assert_retry(&h.send("demo").await, "unreadable");
}

#[tokio::test]
async fn a_send_slower_than_the_timeout_is_retried_later() {
    let h = Harness::with(ClientOptions {
        request_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    })
    .await;
    h.mock
        .script_send(vec![MockReply::ok().delayed(Duration::from_secs(30))]);
    let started = Instant::now();
    let outcome = h.send("demo").await;
    assert_retry(&outcome, "timed out");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the timeout"
    );
    // The request left and no answer came: WeChat may have taken it.
    let SendOutcome::Unknown { reason } = outcome else {
        panic!("a timed-out send is of unknown outcome: {outcome:?}")
    };
    assert!(
        !reason.contains("tok-1"),
        "the URL holds the token: {reason}"
    );
}

#[tokio::test]
async fn an_unreachable_api_is_retried_later() {
    // A port that was free a moment ago: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = WechatClient::new(
        &format!("http://127.0.0.1:{port}"),
        &apps(),
        ClientOptions::default(),
    )
    .unwrap();
    let outcome = client
        .deliver("demo", &"o-user".into(), &OutboundMessage::text("hi"))
        .await;
    assert_retry(&outcome, "no access token");
}

#[tokio::test]
async fn fifty_concurrent_sends_on_a_cold_start_fetch_the_token_once() {
    let h = Harness::start().await;
    // A slow token API, so that every send is waiting on the one fetch.
    h.mock
        .script_token(vec![MockReply::ok().delayed(Duration::from_millis(200))]);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..50 {
        let client = h.client.clone();
        tasks.spawn(async move {
            client
                .deliver(
                    "demo",
                    &format!("o-{n}").into(),
                    &OutboundMessage::text("hi"),
                )
                .await
        });
    }
    while let Some(outcome) = tasks.join_next().await {
        assert_eq!(outcome.unwrap(), SendOutcome::Accepted);
    }
    assert_eq!(h.mock.token_fetches(), 1);
    let tokens = h.tokens_sent();
    assert_eq!(tokens.len(), 50);
    assert!(tokens.iter().all(|t| t == "tok-1"), "{tokens:?}");
}

#[tokio::test]
async fn one_refused_token_under_fifty_concurrent_sends_refreshes_once() {
    let h = Harness::start().await;
    assert_eq!(h.send("demo").await, SendOutcome::Accepted);
    h.mock.reject_token("tok-1", 40001);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..50 {
        let client = h.client.clone();
        tasks.spawn(async move {
            client
                .deliver(
                    "demo",
                    &format!("o-{n}").into(),
                    &OutboundMessage::text("hi"),
                )
                .await
        });
    }
    while let Some(outcome) = tasks.join_next().await {
        assert_eq!(outcome.unwrap(), SendOutcome::Accepted);
    }
    assert_eq!(h.mock.token_fetches(), 2, "one refresh for 50 refusals");
    assert_eq!(h.force_flags(), [false, false]);
    let tokens = h.tokens_sent();
    assert_eq!(tokens.iter().filter(|t| *t == "tok-2").count(), 50);
    assert_eq!(tokens.len(), 101);
}

/// A refusal of tok-1 that arrives after tok-2 replaced it must not throw tok-2 away.
#[tokio::test]
async fn a_late_refusal_of_an_old_token_keeps_the_new_one() {
    let h = Harness::start().await;
    assert_eq!(h.send("demo").await, SendOutcome::Accepted);
    let gate = MockGate::new();
    h.mock.script_send(vec![
        MockReply::errcode(40001).held(&gate),
        MockReply::errcode(40001),
    ]);
    let late = {
        let client = h.client.clone();
        tokio::spawn(async move {
            client
                .deliver("demo", &"o-late".into(), &OutboundMessage::text("hi"))
                .await
        })
    };
    h.mock.wait_for_sends(2, Duration::from_secs(5)).await;
    // Refused at once: refresh to tok-2 and resend.
    assert_eq!(h.send("demo").await, SendOutcome::Accepted);
    gate.open();
    assert_eq!(late.await.unwrap(), SendOutcome::Accepted);
    assert_eq!(h.mock.token_fetches(), 2, "tok-2 was kept");
    assert_eq!(
        h.tokens_sent(),
        ["tok-1", "tok-1", "tok-1", "tok-2", "tok-2"]
    );
}

#[tokio::test]
async fn the_token_is_cached_until_five_minutes_before_it_expires() {
    let clock = ManualClock::new();
    let h = Harness::with(ClientOptions {
        clock: Clock::Manual(clock.clone()),
        ..ClientOptions::default()
    })
    .await;
    assert_eq!(h.send("demo").await, SendOutcome::Accepted);
    clock.advance(Duration::from_secs(7200 - 300 - 1));
    assert_eq!(h.send("demo").await, SendOutcome::Accepted);
    assert_eq!(h.mock.token_fetches(), 1);
    clock.advance(Duration::from_secs(1));
    assert_eq!(h.send("demo").await, SendOutcome::Accepted);
    assert_eq!(h.mock.token_fetches(), 2);
    assert_eq!(h.tokens_sent(), ["tok-1", "tok-1", "tok-2"]);
}

#[tokio::test]
async fn a_failed_refresh_keeps_using_the_token_until_it_really_expires() {
    let clock = ManualClock::new();
    let h = Harness::with(ClientOptions {
        clock: Clock::Manual(clock.clone()),
        ..ClientOptions::default()
    })
    .await;
    assert_eq!(h.send("demo").await, SendOutcome::Accepted);
    clock.advance(Duration::from_secs(7000)); // inside the last 5 minutes
    h.mock.script_token(vec![MockReply::http(502)]);
    assert_eq!(h.send("demo").await, SendOutcome::Accepted);
    assert_eq!(h.tokens_sent(), ["tok-1", "tok-1"]);
    assert_eq!(h.mock.token_fetches(), 2);
}

#[tokio::test]
async fn each_app_has_its_own_token() {
    let h = Harness::start().await;
    assert_eq!(h.send("demo").await, SendOutcome::Accepted);
    assert_eq!(h.send("second").await, SendOutcome::Accepted);
    let appids: Vec<_> = h
        .mock
        .token_requests()
        .iter()
        .map(|r| r["appid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(appids, ["wx-demo", "wx-second"]);
    assert_eq!(h.tokens_sent(), ["tok-1", "tok-2"]);
}

#[tokio::test]
async fn dry_run_never_calls_the_api_and_records_the_send() {
    let h = Harness::start().await;
    assert_eq!(h.client.is_dry_run("dry"), Some(true));
    assert_eq!(h.client.is_dry_run("nosecret"), Some(true));
    assert_eq!(h.client.is_dry_run("demo"), Some(false));
    assert_eq!(h.send("dry").await, SendOutcome::Accepted);
    let link = OutboundMessage::Link {
        title: "T".into(),
        description: "D".into(),
        url: "https://u".into(),
        thumb_url: "https://p".into(),
    };
    assert_eq!(
        h.client.deliver("nosecret", &"o-2".into(), &link).await,
        SendOutcome::Accepted
    );
    assert!(h.mock.requests().is_empty(), "{:?}", h.mock.requests());

    let recorded = h.client.dry_run_sends();
    assert_eq!(recorded.len(), 2);
    assert_eq!(
        (recorded[0].app_id.as_str(), recorded[0].openid.as_str()),
        ("dry", "o-user")
    );
    assert_eq!(recorded[0].msgtype, "text");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&recorded[0].body).unwrap(),
        json!({"touser": "o-user", "msgtype": "text", "text": {"content": "hello"}})
    );
    assert_eq!(recorded[1].message, link);
}

#[tokio::test]
async fn an_unknown_app_fails() {
    let h = Harness::start().await;
    assert_failed(&h.send("nope").await, NOT_FROM_WECHAT);
    assert!(h.mock.requests().is_empty());
}
