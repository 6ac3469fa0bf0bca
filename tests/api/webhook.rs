//! The webhook driven the way WeChat drives it: URL verification, pushes in every format and
//! mode, handoff replies in each, and one test per refused-request row of SPEC §3.

use crate::helpers::*;
use kefu::protocol::reply::parse_encrypted;

fn xml_field(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))? + start;
    let raw = &body[start..end];
    Some(
        raw.strip_prefix("<![CDATA[")
            .and_then(|r| r.strip_suffix("]]>"))
            .unwrap_or(raw)
            .to_string(),
    )
}

fn all_modes() -> TestConfig {
    TestConfig {
        apps: vec![
            TestAppSpec::new("pj", "json", "plaintext"),
            TestAppSpec::new("px", "xml", "plaintext"),
            TestAppSpec::new("sj", "json", "safe"),
            TestAppSpec::new("sx", "xml", "safe"),
            TestAppSpec::new("cx", "xml", "compatible"),
            TestAppSpec::new("cj", "json", "compatible"),
            TestAppSpec::new("oa", "xml", "plaintext").official_account(),
            TestAppSpec::new("oas", "xml", "safe").official_account(),
        ],
        ..TestConfig::default()
    }
}

// ---- URL verification -------------------------------------------------------------------

#[tokio::test]
async fn get_verification_echoes_echostr() {
    let app = spawn_app().await;
    let q = app.signed_query(TestApp::now(), "12345");
    let r = app
        .get(&format!("/wechat/demo?{q}&echostr=4375120948345356249"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "4375120948345356249");
}

#[tokio::test]
async fn get_verification_on_bare_path_with_one_app() {
    let app = spawn_app().await;
    let q = app.signed_query(TestApp::now(), "12345");
    let r = app.get(&format!("/wechat?{q}&echostr=hello")).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello"));
}

#[tokio::test]
async fn get_verification_with_wrong_signature_is_403_and_does_not_echo() {
    let app = spawn_app().await;
    let ts = TestApp::now();
    let r = app
        .get(&format!("/wechat/demo?signature=f464b24fc39322e44b38aa78f5edd27bd1441696&timestamp={ts}&nonce=1&echostr=x"))
        .await;
    assert_eq!(r.status, 403);
    assert_ne!(r.body, "x");
}

#[tokio::test]
async fn get_verification_works_for_safe_mode_apps() {
    let app = spawn_app_with(all_modes()).await;
    let q = app.signed_query(TestApp::now(), "777");
    let r = app.get(&format!("/wechat/sx?{q}&echostr=abc")).await;
    assert_eq!((r.status, r.body.as_str()), (200, "abc"));
}

// ---- pushes in every format and mode ------------------------------------------------------

#[tokio::test]
async fn text_push_is_answered_success_in_every_mode_and_format() {
    let app = spawn_app_with(all_modes()).await;
    for id in ["pj", "px", "sj", "sx", "cx", "cj"] {
        let r = app.post_text(id, "o_user_1", "你好").await;
        assert_eq!((r.status, r.body.as_str()), (200, "success"), "app {id}");
    }
}

#[tokio::test]
async fn handoff_is_a_transfer_in_the_push_format_for_every_mode() {
    let app = spawn_app_with(all_modes()).await;
    for id in ["pj", "px", "sj", "sx", "cx", "cj"] {
        let user = format!("o_handoff_{id}");
        let r = app.post_text(id, &user, "转人工").await;
        assert_eq!(r.status, 200, "app {id}: {}", r.body);
        let encrypted = id.starts_with('s') || id.starts_with('c');
        if encrypted {
            assert!(
                parse_encrypted(r.body.as_bytes()).is_ok(),
                "app {id} reply is encrypted: {}",
                r.body
            );
        }
        let plain = app.open(id, &r.body);
        let json = id.ends_with('j');
        if json {
            let v: serde_json::Value = serde_json::from_str(&plain).expect("json transfer");
            assert_eq!(v["MsgType"], "transfer_customer_service", "app {id}");
            assert_eq!(v["ToUserName"], user.as_str());
            assert_eq!(v["FromUserName"], "gh_kefu_send");
            assert!(v["CreateTime"].as_i64().unwrap_or(0) > 0);
        } else {
            assert_eq!(
                xml_field(&plain, "MsgType").as_deref(),
                Some("transfer_customer_service"),
                "app {id}: {plain}"
            );
            assert_eq!(
                xml_field(&plain, "ToUserName").as_deref(),
                Some(user.as_str())
            );
            assert_eq!(
                xml_field(&plain, "FromUserName").as_deref(),
                Some("gh_kefu_send")
            );
        }
    }
}

#[tokio::test]
async fn plaintext_push_to_a_compatible_app_is_accepted() {
    let app = spawn_app_with(all_modes()).await;
    let q = app.signed_query(TestApp::now(), "55");
    let body = r#"{"ToUserName":"gh_x","FromUserName":"o_c","CreateTime":1714112445,"MsgType":"text","Content":"你好","MsgId":7001}"#;
    let r = app.post_raw(&format!("/wechat/cj?{q}"), body).await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
}

#[tokio::test]
async fn official_account_answers_text_passively_in_xml() {
    let app = spawn_app_with(all_modes()).await;
    let r = app.post_text("oa", "o_oa_user", "你好").await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.contains("xml"), "{}", r.content_type);
    assert_eq!(xml_field(&r.body, "MsgType").as_deref(), Some("text"));
    assert_eq!(xml_field(&r.body, "Content").as_deref(), Some("您好！"));
    assert_eq!(
        xml_field(&r.body, "ToUserName").as_deref(),
        Some("o_oa_user")
    );
}

#[tokio::test]
async fn official_account_in_safe_mode_encrypts_its_passive_text() {
    let app = spawn_app_with(all_modes()).await;
    let r = app.post_text("oas", "o_oa_user", "你好").await;
    assert_eq!(r.status, 200);
    let plain = app.open("oas", &r.body);
    assert_eq!(
        xml_field(&plain, "Content").as_deref(),
        Some("您好！"),
        "{plain}"
    );
}

#[tokio::test]
async fn an_event_is_never_handed_off() {
    // Even with a default rule that hands off: the default never applies to events.
    let rules = format!("{BASIC_RULES}  - id: fallback\n    default: true\n    handoff: true\n");
    let app = spawn_app_with(TestConfig {
        rules: vec![("basic.yaml", rules)],
        ..TestConfig::default()
    })
    .await;
    let r = app.post_event("demo", "o_evt", "subscribe").await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
    let r = app
        .post_event("demo", "o_evt", "user_enter_tempsession")
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
}

#[tokio::test]
async fn unknown_message_types_are_answered_success() {
    let app = spawn_app().await;
    let q = app.signed_query(TestApp::now(), "9");
    let body = r#"{"ToUserName":"gh_x","FromUserName":"o_v","CreateTime":1714112445,"MsgType":"voice","MediaId":"m","MsgId":8001}"#;
    let r = app.post_raw(&format!("/wechat/demo?{q}"), body).await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
}

#[tokio::test]
async fn official_vector_v3_is_accepted_through_the_server() {
    // The JSON safe-mode example of the MP docs (protocol doc V3), with its own old timestamp.
    let mut spec =
        TestAppSpec::new("v3", "json", "safe").credentials("wxba5fad812f8e6fb9", "AAAAA");
    spec.aes_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let app = spawn_app_with(TestConfig {
        apps: vec![spec],
        extra: "max_timestamp_skew_secs: 0".into(),
        ..TestConfig::default()
    })
    .await;
    let body = r#"{"ToUserName":"gh_97417a04a28d","Encrypt":"+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04="}"#;
    let q = "signature=6c5c811b55cc85e0e1b54100749188c20beb3f5d&timestamp=1714112445&nonce=415670741&openid=o9AgO5Kd5ggOC-bXrbNODIiE3bGY&encrypt_type=aes&msg_signature=046e02f8204d34f8ba5fa3b1db94908f3df2e9b3";
    let r = app.post_raw(&format!("/wechat/v3?{q}"), body).await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
    // One flipped character of msg_signature: refused.
    let bad = q.replace("046e02f8", "146e02f8");
    let r = app.post_raw(&format!("/wechat/v3?{bad}"), body).await;
    assert_eq!(r.status, 403);
}

// ---- refused requests (SPEC §3 table) -----------------------------------------------------

#[tokio::test]
async fn unknown_app_is_404() {
    let app = spawn_app().await;
    let q = app.signed_query(TestApp::now(), "1");
    assert_eq!(
        app.post_raw(&format!("/wechat/nope?{q}"), "{}")
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(&format!("/wechat/nope?{q}&echostr=x")).await.status,
        404
    );
}

#[tokio::test]
async fn bare_path_with_several_apps_is_404() {
    let app = spawn_app_with(all_modes()).await;
    let q = app.signed_query(TestApp::now(), "1");
    assert_eq!(app.get(&format!("/wechat?{q}&echostr=x")).await.status, 404);
}

#[tokio::test]
async fn missing_parameters_are_400() {
    let app = spawn_app().await;
    let ts = TestApp::now();
    let sig = kefu::protocol::signature::sign(&[TOKEN, &ts.to_string(), "1"]);
    for q in [
        format!("timestamp={ts}&nonce=1"),
        format!("signature={sig}&nonce=1"),
        format!("signature={sig}&timestamp={ts}"),
    ] {
        assert_eq!(
            app.post_raw(&format!("/wechat/demo?{q}"), "{}")
                .await
                .status,
            400,
            "{q}"
        );
    }
    assert_eq!(
        app.get(&format!(
            "/wechat/demo?signature={sig}&timestamp={ts}&nonce=1"
        ))
        .await
        .status,
        400,
        "no echostr"
    );
}

#[tokio::test]
async fn encrypted_push_without_msg_signature_is_400() {
    let app = spawn_app_with(all_modes()).await;
    let q = app.signed_query(TestApp::now(), "1");
    let r = app
        .post_raw(
            &format!("/wechat/sj?{q}&encrypt_type=aes"),
            r#"{"Encrypt":"x"}"#,
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn wrong_signature_is_403() {
    let app = spawn_app().await;
    let ts = TestApp::now();
    let r = app
        .post_raw(&format!("/wechat/demo?signature=0000000000000000000000000000000000000000&timestamp={ts}&nonce=1"), "{}")
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn wrong_msg_signature_is_403() {
    let app = spawn_app_with(all_modes()).await;
    let q = app.signed_query(TestApp::now(), "1");
    let encrypt = app.seal_push("sj", r#"{"ToUserName":"gh","FromUserName":"o","CreateTime":1,"MsgType":"text","Content":"x","MsgId":1}"#);
    let body = format!(r#"{{"ToUserName":"gh","Encrypt":"{encrypt}"}}"#);
    let r = app
        .post_raw(&format!("/wechat/sj?{q}&encrypt_type=aes&msg_signature=0000000000000000000000000000000000000000"), body)
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn timestamp_outside_the_window_is_403() {
    let app = spawn_app().await;
    let q = app.signed_query(TestApp::now() - 3600, "1");
    assert_eq!(
        app.post_raw(&format!("/wechat/demo?{q}"), "{}")
            .await
            .status,
        403
    );
    let q = app.signed_query(TestApp::now() + 3600, "1");
    assert_eq!(
        app.post_raw(&format!("/wechat/demo?{q}"), "{}")
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn non_numeric_timestamp_is_400() {
    let app = spawn_app().await;
    let sig = kefu::protocol::signature::sign(&[TOKEN, "abc", "1"]);
    let r = app
        .post_raw(
            &format!("/wechat/demo?signature={sig}&timestamp=abc&nonce=1"),
            "{}",
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn plaintext_push_to_a_safe_app_is_403() {
    let app = spawn_app_with(all_modes()).await;
    let q = app.signed_query(TestApp::now(), "1");
    let body = r#"{"ToUserName":"gh","FromUserName":"o","CreateTime":1,"MsgType":"text","Content":"x","MsgId":1}"#;
    assert_eq!(
        app.post_raw(&format!("/wechat/sj?{q}"), body).await.status,
        403
    );
}

#[tokio::test]
async fn encrypted_push_to_a_plaintext_app_is_403() {
    let app = spawn_app().await;
    let q = app.signed_query(TestApp::now(), "1");
    let r = app
        .post_raw(
            &format!("/wechat/demo?{q}&encrypt_type=aes&msg_signature=00"),
            r#"{"Encrypt":"x"}"#,
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let app = spawn_app().await;
    let q = app.signed_query(TestApp::now(), "1");
    let body = format!(r#"{{"Content":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(
        app.post_raw(&format!("/wechat/demo?{q}"), body)
            .await
            .status,
        413
    );
}

#[tokio::test]
async fn body_neither_json_nor_xml_is_400() {
    let app = spawn_app().await;
    let q = app.signed_query(TestApp::now(), "1");
    assert_eq!(
        app.post_raw(&format!("/wechat/demo?{q}"), "hello")
            .await
            .status,
        400
    );
    assert_eq!(
        app.post_raw(&format!("/wechat/demo?{q}"), "").await.status,
        400
    );
    assert_eq!(
        app.post_raw(&format!("/wechat/demo?{q}"), "{not json")
            .await
            .status,
        400
    );
    assert_eq!(
        app.post_raw(&format!("/wechat/demo?{q}"), "<xml><a></xml>")
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn body_not_utf8_is_400() {
    let app = spawn_app().await;
    let q = app.signed_query(TestApp::now(), "1");
    let body: Vec<u8> = b"{\"Content\":\"\xff\xfe\"}".to_vec();
    assert_eq!(
        app.post_raw(&format!("/wechat/demo?{q}"), body)
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn xml_with_doctype_is_400() {
    let app = spawn_app_with(all_modes()).await;
    let q = app.signed_query(TestApp::now(), "1");
    let body = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&e;</Content><MsgId>1</MsgId></xml>"#;
    assert_eq!(
        app.post_raw(&format!("/wechat/px?{q}"), body).await.status,
        400
    );
}

async fn post_encrypt(app: &TestApp, id: &str, encrypt: &str) -> u16 {
    let ts = TestApp::now();
    let q = app.signed_query(ts, "42");
    let msg_sig = kefu::protocol::signature::sign(&[TOKEN, &ts.to_string(), "42", encrypt]);
    let body = format!(r#"{{"ToUserName":"gh","Encrypt":"{encrypt}"}}"#);
    app.post_raw(
        &format!("/wechat/{id}?{q}&encrypt_type=aes&msg_signature={msg_sig}"),
        body,
    )
    .await
    .status
}

#[tokio::test]
async fn encrypted_payload_that_fails_to_decrypt_is_400() {
    let app = spawn_app_with(all_modes()).await;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    // Not base64.
    assert_eq!(post_encrypt(&app, "sj", "!!!notbase64!!!").await, 400);
    // A length that is not a multiple of 32.
    assert_eq!(post_encrypt(&app, "sj", &b64.encode([1u8; 48])).await, 400);
    // Random blocks: garbage padding or layout.
    assert_eq!(post_encrypt(&app, "sj", &b64.encode([9u8; 64])).await, 400);
    // Encrypted for another appid.
    let cfg = app.app("sj");
    let other =
        kefu::protocol::crypto::encrypt(&cfg.aes_keys[0], b"{}", "wx_other_app", &[1u8; 16]);
    assert_eq!(post_encrypt(&app, "sj", &other).await, 400);
    // Encrypt field missing.
    let ts = TestApp::now();
    let q = app.signed_query(ts, "42");
    let r = app
        .post_raw(
            &format!("/wechat/sj?{q}&encrypt_type=aes&msg_signature=00"),
            r#"{"ToUserName":"gh"}"#,
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn other_methods_are_405() {
    let app = spawn_app().await;
    let q = app.signed_query(TestApp::now(), "1");
    for m in [
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        assert_eq!(
            app.request(m.clone(), &format!("/wechat/demo?{q}"), "")
                .await
                .status,
            405,
            "{m}"
        );
    }
}

#[tokio::test]
async fn refusals_keep_the_connection_usable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    let q = app.signed_query(TestApp::now(), "1");
    let bad = "x".repeat(1000);
    // A refused request (bad signature) with a body, then a good one on the same connection.
    let req1 = format!(
        "POST /wechat/demo?signature=bad&timestamp={}&nonce=1 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{bad}",
        TestApp::now(),
        bad.len()
    );
    let req2 = format!("GET /wechat/demo?{q}&echostr=still-open HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(req1.as_bytes()).await.expect("write 1");
    stream.write_all(req2.as_bytes()).await.expect("write 2");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !String::from_utf8_lossy(&seen).contains("still-open") {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => break,
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("403"), "{text}");
    assert!(
        text.contains("still-open"),
        "second request answered on the same connection: {text}"
    );
}

// ---- dedupe -------------------------------------------------------------------------------

#[tokio::test]
async fn a_repeated_handoff_gets_the_same_transfer() {
    let app = spawn_app().await;
    let msg =
        kefu::cli::send::message_for("o_rep", None, Some("转人工"), TestApp::now()).expect("msg");
    let first = app.post_message("demo", &msg).await;
    let second = app.post_message("demo", &msg).await;
    assert_eq!(first.status, 200);
    assert!(
        first.body.contains("transfer_customer_service"),
        "{}",
        first.body
    );
    assert_eq!(first.body, second.body);
}
