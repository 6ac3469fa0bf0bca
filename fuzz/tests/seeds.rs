//! The seed corpora of the fuzz targets (`fuzz/seeds/<target>/`), built from the protocol
//! vectors (doc §4, `src/protocol/vectors.rs`) and the pushes of kefu's own tests.
//!
//! `cargo test --manifest-path fuzz/Cargo.toml --test seeds` checks that the committed files are
//! what this writes; `KEFU_WRITE_SEEDS=1` (re)writes them. Every seed also runs through its
//! target once, so a seed that crashes fails here first.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kefu::protocol::crypto::{self, AesKey};
use kefu::protocol::message::{parse_message, render_envelope, render_push};
use kefu::protocol::{Format, InboundMessage, MsgId, MsgKind};
use kefu_fuzz::{AES_KEY_PREVIOUS, APPID, AUTO, KEYS, NOW, key};

/// Pushes of the doc's samples and of kefu's tests (`src/protocol/message.rs`), verbatim.
const XML_PUSHES: &[&str] = &[
    "<xml>\n   <ToUserName><![CDATA[toUser]]></ToUserName>\n   <FromUserName><![CDATA[fromUser]]></FromUserName>\n   <CreateTime>1482048670</CreateTime>\n   <MsgType><![CDATA[text]]></MsgType>\n   <Content><![CDATA[this is a test]]></Content>\n   <MsgId>1234567890123456</MsgId>\n</xml>",
    "<xml>\n      <ToUserName><![CDATA[toUser]]></ToUserName>\n      <FromUserName><![CDATA[fromUser]]></FromUserName>\n      <CreateTime>1482048670</CreateTime>\n      <MsgType><![CDATA[image]]></MsgType>\n      <PicUrl><![CDATA[this is a url]]></PicUrl>\n      <MediaId><![CDATA[media_id]]></MediaId>\n      <MsgId>1234567890123456</MsgId>\n</xml>",
    "<xml>\n    <ToUserName><![CDATA[toUser]]></ToUserName>\n    <FromUserName><![CDATA[fromUser]]></FromUserName>\n    <CreateTime>1482048670</CreateTime>\n    <MsgType><![CDATA[event]]></MsgType>\n    <Event><![CDATA[user_enter_tempsession]]></Event>\n    <SessionFrom><![CDATA[sessionFrom]]></SessionFrom>\n</xml>",
    "<xml>\n  <ToUserName><![CDATA[toUser]]></ToUserName>\n  <FromUserName><![CDATA[fromUser]]></FromUserName>\n  <CreateTime>1482048670</CreateTime>\n  <MsgType><![CDATA[miniprogrampage]]></MsgType>\n  <MsgId>1234567890123456</MsgId>\n  <Title><![CDATA[Title]]></Title>\n  <AppId><![CDATA[AppId]]></AppId>\n  <PagePath><![CDATA[PagePath]]></PagePath>\n  <ThumbUrl><![CDATA[ThumbUrl]]></ThumbUrl>\n  <ThumbMediaId><![CDATA[ThumbMediaId]]></ThumbMediaId>\n</xml>",
    "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[this is a test]]></Content><MsgId>1234567890123456</MsgId><MsgDataId>xxxx</MsgDataId><Idx>xxxx</Idx><bizmsgmenuid>101</bizmsgmenuid></xml>",
    "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1357290913</CreateTime><MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[media_id]]></MediaId><Format><![CDATA[Format]]></Format><MsgId>1234567890123456</MsgId></xml>",
    "<xml>\n  <ToUserName><![CDATA[toUser]]></ToUserName>\n  <FromUserName><![CDATA[FromUser]]></FromUserName>\n  <CreateTime>123456789</CreateTime>\n  <MsgType><![CDATA[event]]></MsgType>\n  <Event><![CDATA[subscribe]]></Event>\n  <EventKey><![CDATA[qrscene_123123]]></EventKey>\n  <Ticket><![CDATA[TICKET]]></Ticket>\n  <ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType><ScanResult><![CDATA[1]]></ScanResult></ScanCodeInfo>\n</xml>",
    "<xml><ToUserName><![CDATA[u]]></ToUserName><TransInfo><KfAccount><![CDATA[test1@test]]></KfAccount><Content>not this</Content></TransInfo><FromUserName>f</FromUserName><MsgType>text</MsgType><Content>this</Content></xml>",
    "<xml><ToUserName>gh_1</ToUserName><FromUserName>o&amp;1</FromUserName><CreateTime> 42 </CreateTime><MsgType>text</MsgType><Content>a &lt;b&gt; &quot;c&quot; &#20320;&#x597D;</Content><MsgId>7</MsgId></xml>",
    "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>text</MsgType><MsgId>x_1</MsgId></xml>",
    "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>event</MsgType><CreateTime/></xml>",
    "\n<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!-- c --><xml>\n  <ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>text</MsgType><Content><![CDATA[a]]]]><![CDATA[>b]]></Content>\n</xml>\n",
    "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><Content>&x;</Content></xml>",
    "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><MsgType>text</MsgType><CreateTime>soon</CreateTime></xml>",
    "<xml>\n<Encrypt><![CDATA[ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ==]]></Encrypt>\n<MsgSignature><![CDATA[1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1]]></MsgSignature>\n<TimeStamp>1713424427</TimeStamp>\n<Nonce><![CDATA[415670741]]></Nonce>\n</xml>",
    // V5: a compatible-mode body (plaintext fields and Encrypt side by side).
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[abcdteT]]></Content><MsgId>6054768590064713728</MsgId><Encrypt><![CDATA[hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=]]></Encrypt></xml>",
];

const JSON_PUSHES: &[&str] = &[
    r#"{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,"MsgType":"text","Content":"this is a test","MsgId":1234567890123456}"#,
    r#"{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,"MsgType":"image","PicUrl":"this is a url","MediaId":"media_id","MsgId":1234567890123456}"#,
    r#"{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,"MsgType":"event","Event":"user_enter_tempsession","SessionFrom":"sessionFrom"}"#,
    r#"{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,"MsgType":"miniprogrampage","MsgId":1234567890123456,"Title":"title","AppId":"appid","PagePath":"path","ThumbUrl":"","ThumbMediaId":""}"#,
    r#"{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714037059,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}"#,
    r#"{"ToUserName":"a","FromUserName":"b","MsgType":"text","MsgId":18446744073709551615}"#,
    r#"{"ToUserName":"a","FromUserName":"b","CreateTime":"1555684067","MsgType":"text","Content":"hi","MsgId":"49d72d_1555684067"}"#,
    r#"{"ToUserName":"a","FromUserName":"b","MsgType":"event","Event":"CLICK","EventKey":7}"#,
    r#"{"ToUserName":"a","FromUserName":"b","MsgType":"text","CreateTime":1.5}"#,
    r#"{"ToUserName":"a","ToUserName":"b","FromUserName":"b","MsgType":"text"}"#,
    "{\"ToUserName\":\"a\",\"FromUserName\":\"b\",\"MsgType\":\"text\",\"Content\":\"\\u4f60\\u597d\\n\\\"q\\\" \\ud83d\\ude00\"}",
    r#"{"Encrypt":"ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ==","MsgSignature":"1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1","TimeStamp":1713424427,"Nonce":"415670741"}"#,
];

/// V3's safe-mode envelope (JSON), which the `webhook` target's fixed app opens as sent.
const V3_ENCRYPT: &str = "+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04=";

/// (pair of `KEYS`, `Encrypt`) of the vectors V3, V5, V10, V8b, V7, V9.
const VECTOR_PAYLOADS: &[(usize, &str)] = &[
    (0, V3_ENCRYPT),
    (
        1,
        "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=",
    ),
    (
        2,
        "D7yzvUNAL930rd28wf21s4hvXhz0L6Uit/p2Di6C5DHyYGpEgdBRnKjBec34JwoQXicwaZC7fOVihW80F4VtsdvE//1vr7oAbqjDv8KenVp+ajKYpJnyQ4zMRhIC+a31fCVOMC03FfzV/QuC94kBP55a+Za3sJgvAn+ZbsNqZI5DkyuzkhQN8OBqCzFhizGmy0xpM0MEA4agpvE+RuNO1rhHTtuJB5yltw1FiYzecSXJ+y/D2r81VkRn2eYjh2ltsoyfbDR7Is6ookXIFxTfyeNyeHxMeT4KN5WpCDmSbTcUYrbBUlkGLJ9n/rU8YOywma6G7aTb7KZKOqCxgfoUlYEZPk4FUL/TK7ShriFDMVCLyjQJ15Ob++agDWtcxhfUfe6HIoIpRW8mKNBQiY/Jd1svvuskA1wLef1RTtzKfMpagSCX/laZINmdnX4zrF6kIaR9P4xQrWXbsTFHTYe0Mg==",
    ),
    (
        3,
        "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=",
    ),
    (
        4,
        "rTNFcsut4LfGuAFKEUVVpwcaCOTJzOd9twZdIW910jb3k+iicx2uvhttIZ3Qg9Qgty3BEF2xbOrz6boTfb30dMomcgrkTqdFPwnhqbk+kIQ7rZiwny9D7NUrTgA5kpX3KsZvrXzUZyP2x9YOlxbgm572lmxKvM7HAQQhIQ/p6HBmoY30bGXFK0BtIu1pW9TjhOYrLQoU18nWYjWqDA1ynkmOytpv7QRI1P1+0NoxL0q2zO1DgeSvnE8CZGo/o5Ap/WHK5W2RAsinpzN4/LjPnmB6U01I5XCoJoC0GK/yMZycd2Oh8Nq6+wBkC1U85oy0ktOY4nLvsQMLrourmMGdZHuTbqpeJ8Ao/5PRYJ+WBvRUwPfGKBL2+2IKZF49vAJqkcGWSHGE76ZN2erXeuNazf/o9o3lIE3q739o4c8t9QGPe31GT2Go/rOz1BsrASwvauNulCh+++yz+CQzBIuikA==",
    ),
    (
        5,
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
    ),
];

fn message(openid: &str, kind: MsgKind, msg_id: Option<MsgId>) -> InboundMessage {
    InboundMessage {
        to_user_name: "gh_97417a04a28d".into(),
        from_user_name: openid.into(),
        create_time: NOW,
        msg_id,
        kind,
    }
}

fn text(s: &str) -> MsgKind {
    MsgKind::Text { content: s.into() }
}

fn event(name: &str) -> MsgKind {
    MsgKind::Event {
        event: name.into(),
        session_from: Some("kefu-send".into()),
        event_key: None,
        kf_account: None,
    }
}

/// Messages that take the decision down each of its paths with the repository's rules.
fn messages() -> Vec<(&'static str, InboundMessage)> {
    let id = |n| Some(MsgId::Number(n));
    vec![
        ("human", message("o_user_1", text("转人工"), id(1))),
        ("greeting", message("o_user_2", text("你好"), id(2))),
        ("faq", message("o_user_3", text("小程序怎么注销"), id(3))),
        ("clarify", message("o_user_4", text("注销"), id(4))),
        ("menu-choice", message("o_user_5", text("2"), id(5))),
        (
            "default",
            message("o_user_6", text("今天天气怎么样"), id(6)),
        ),
        (
            "fullwidth",
            message("o_user_7", text("ＨＥＬＬＯ！"), id(7)),
        ),
        (
            "ai-not-human",
            message("o_user_8", text("人工智能小程序怎么注销"), id(8)),
        ),
        (
            "welcome",
            message("o_user_9", event("user_enter_tempsession"), None),
        ),
        ("subscribe", message("o_user_10", event("subscribe"), None)),
        (
            "image",
            message(
                "o_user_11",
                MsgKind::Image {
                    pic_url: "http://mmbiz.qpic.cn/x".into(),
                    media_id: "m".into(),
                },
                id(11),
            ),
        ),
        (
            "voice",
            message(
                "o_user_12",
                MsgKind::Other {
                    msg_type: "voice".into(),
                },
                id(12),
            ),
        ),
        (
            "cdata-end",
            message(
                "o]]>user<",
                text("a]]>b <xml> & \"q\" \u{1F600}"),
                Some(MsgId::Text("49d72d_1555684067".into())),
            ),
        ),
    ]
}

/// A `webhook` input: flags, query, newline, body.
fn request(flags: u8, query: &str, body: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(query.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// The query of a push at the harness's clock for `flags`, signed by the harness.
fn query(flags: u8, encrypted: bool) -> String {
    let ts = NOW + i64::from(flags >> 5) * 7 * 3600;
    let mut q = format!("signature={AUTO}&timestamp={ts}&nonce=415670741&openid=o_user");
    if encrypted {
        q.push_str(&format!("&encrypt_type=aes&msg_signature={AUTO}"));
    }
    q
}

fn seeds() -> BTreeMap<String, Vec<u8>> {
    let mut seeds = BTreeMap::new();
    let mut add = |target: &str, name: String, bytes: Vec<u8>| {
        seeds.insert(format!("{target}/{name}"), bytes);
    };
    let pairs: Vec<(AesKey, &str)> = KEYS.iter().map(|&(k, a)| (key(k), a)).collect();

    // Targets 1 and 2: the literal pushes, the vectors' plaintexts, and rendered messages.
    for (i, body) in XML_PUSHES.iter().enumerate() {
        add(
            "xml_push",
            format!("sample-{i:02}.xml"),
            body.as_bytes().to_vec(),
        );
    }
    for (i, body) in JSON_PUSHES.iter().enumerate() {
        add(
            "json_push",
            format!("sample-{i:02}.json"),
            body.as_bytes().to_vec(),
        );
    }
    for &(pair, encrypt) in VECTOR_PAYLOADS {
        let (key, appid) = &pairs[pair];
        let plain = crypto::decrypt(key, encrypt, appid).expect("a vector decrypts");
        let target = match kefu::protocol::message::detect_format(&plain) {
            Some(Format::Xml) => "xml_push",
            Some(Format::Json) => "json_push",
            // V9: an echostr, not a push.
            None => continue,
        };
        add(target, format!("vector-pair{pair}"), plain);
    }
    for (name, msg) in messages() {
        add(
            "xml_push",
            format!("{name}.xml"),
            render_push(Format::Xml, &msg).into_bytes(),
        );
        add(
            "json_push",
            format!("{name}.json"),
            render_push(Format::Json, &msg).into_bytes(),
        );
    }

    // Target 3: each vector as a bare Encrypt and in an envelope; plaintext layouts.
    for &(pair, encrypt) in VECTOR_PAYLOADS {
        let selector = u8::try_from(pair).unwrap_or(0);
        let mut bare = vec![selector];
        bare.extend_from_slice(encrypt.as_bytes());
        add("aes_open", format!("vector-pair{pair}"), bare);
        for format in [Format::Xml, Format::Json] {
            let mut env = vec![selector];
            env.extend_from_slice(render_envelope(format, "gh_97417a04a28d", encrypt).as_bytes());
            add("aes_open", format!("envelope-pair{pair}-{format:?}"), env);
        }
    }
    for (i, body) in XML_PUSHES
        .iter()
        .enumerate()
        .filter(|(_, b)| b.contains("<Encrypt>"))
    {
        let mut compatible = vec![1];
        compatible.extend_from_slice(body.as_bytes());
        add("aes_open", format!("compatible-{i:02}"), compatible);
    }
    for (pair, msg, appid) in [
        (0usize, &b"<xml/>"[..], APPID),
        (0, b"{\"MsgType\":\"text\"}", APPID),
        (1, b"", "wx2c2769f8efd9abc2"),
        (2, b"exactly 12 b", ""),
    ] {
        // `random16 ‖ u32_be(len) ‖ msg ‖ appid`, PKCS#7 over 32: the plaintext of a valid payload.
        let mut plain = b"0123456789abcdef".to_vec();
        plain.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(0).to_be_bytes());
        plain.extend_from_slice(msg);
        plain.extend_from_slice(appid.as_bytes());
        let pad = 32 - plain.len() % 32;
        plain.resize(plain.len() + pad, u8::try_from(pad).unwrap_or(0));
        let mut layout = vec![0x80 | u8::try_from(pair).unwrap_or(0)];
        layout.extend_from_slice(&plain);
        add("aes_open", format!("layout-{pair}-{}", msg.len()), layout);
    }

    // Target 4: requests in each mode, sealed by the harness or by the seed, GET, sessions.
    let v3 = format!(
        "{{\n    \"ToUserName\": \"gh_97417a04a28d\",\n    \"Encrypt\": \"{V3_ENCRYPT}\"\n}}"
    );
    add(
        "webhook",
        "vector-v3-safe-json".into(),
        request(
            2,
            "signature=6c5c811b55cc85e0e1b54100749188c20beb3f5d&timestamp=1714112445&nonce=415670741&openid=o9AgO5Kd5ggOC-bXrbNODIiE3bGY&encrypt_type=aes&msg_signature=046e02f8204d34f8ba5fa3b1db94908f3df2e9b3",
            v3.as_bytes(),
        ),
    );
    add(
        "webhook",
        "verify-get".into(),
        request(
            4,
            &format!("{}&echostr=5927782489442352469", query(4, false)),
            b"",
        ),
    );
    add(
        "webhook",
        "bad-signature".into(),
        request(
            0,
            "signature=f21891de399b4e33a1a93c9a7b8a8fffb5a443fe&timestamp=1714112445&nonce=test",
            b"<xml/>",
        ),
    );
    let previous = key(AES_KEY_PREVIOUS);
    for (i, (name, msg)) in messages().into_iter().enumerate() {
        let format = if i % 2 == 0 {
            Format::Xml
        } else {
            Format::Json
        };
        let plain = render_push(format, &msg);
        // Session bits (5-7) cycle through the sessions and the clock.
        let session = u8::try_from(i % 6).unwrap_or(0) << 5;
        let official = if i % 3 == 0 { 0b1_0000 } else { 0 };
        let flags = session | official;
        add(
            "webhook",
            format!("{name}-plaintext"),
            request(flags, &query(flags, false), plain.as_bytes()),
        );
        let sealed = flags | 0b1000 | if i % 2 == 0 { 1 } else { 2 };
        add(
            "webhook",
            format!("{name}-sealed"),
            request(sealed, &query(sealed, true), plain.as_bytes()),
        );
        if i < 4 {
            // An envelope made here, with the previous key (a rotation in progress).
            let encrypt = crypto::encrypt(&previous, plain.as_bytes(), APPID, &[9; 16]);
            let env = render_envelope(format, "gh_97417a04a28d", &encrypt);
            let safe = flags | 2;
            add(
                "webhook",
                format!("{name}-envelope"),
                request(safe, &query(safe, true), env.as_bytes()),
            );
        }
    }
    seeds
}

#[test]
fn seeds_are_current_and_do_not_crash() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let seeds = seeds();
    let write = std::env::var_os("KEFU_WRITE_SEEDS").is_some();
    if write {
        let _ = std::fs::remove_dir_all(&dir);
    }
    for (name, bytes) in &seeds {
        let path = dir.join(name);
        let target = name.split('/').next().unwrap_or_default();
        match target {
            "xml_push" => kefu_fuzz::push(bytes, Format::Xml),
            "json_push" => kefu_fuzz::push(bytes, Format::Json),
            "aes_open" => kefu_fuzz::aes_open(bytes),
            _ => {
                let _ = kefu_fuzz::webhook(bytes);
            }
        }
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        } else {
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (KEFU_WRITE_SEEDS=1 writes it)", path.display())
            });
            assert!(
                committed == *bytes,
                "{} is stale (KEFU_WRITE_SEEDS=1 rewrites it)",
                path.display()
            );
        }
    }
}

/// The seeds go where they mean to: each push parses, each request is answered.
#[test]
fn seeds_reach_deep() {
    let seeds = seeds();
    for (name, bytes) in &seeds {
        if name.starts_with("webhook/") && !name.contains("bad-signature") {
            let outcome = kefu_fuzz::webhook(bytes);
            assert!(
                !matches!(outcome, kefu_fuzz::Outcome::Refused(_)),
                "{name}: {outcome:?}"
            );
        }
        if name.starts_with("json_push/sample-0")
            && !name.contains("sample-08")
            && !name.contains("sample-09")
        {
            assert!(parse_message(bytes).is_ok(), "{name}");
        }
    }
}
