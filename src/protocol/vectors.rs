//! The vectors of protocol doc §4, end to end across signature, crypto, message and reply.
//!
//! Each test is named after its vector and walks the path the webhook (or `kefu send`) takes:
//! parse the envelope, check `msg_signature`, decrypt, parse the message; or encrypt, sign and
//! render a reply. Values are copied verbatim from the doc.

use super::crypto::{AesKey, decrypt, encrypt, msg_signature, seal};
use super::message::{Format, MsgId, MsgKind, parse_envelope, parse_message, render_envelope};
use super::reply::{EncryptedReply, encrypted, parse_encrypted};
use super::signature;

const KEY_A: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const KEY_G: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn key(s: &str) -> AesKey {
    AesKey::parse(s).unwrap()
}

fn random(s: &str) -> [u8; 16] {
    s.as_bytes().try_into().unwrap()
}

const V3_ENCRYPT: &str = "+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04=";

#[test]
fn v3_mini_program_safe_mode_json() {
    let (token, ts, nonce) = ("AAAAA", "1714112445", "415670741");
    let appid = "wxba5fad812f8e6fb9";
    let body = format!(
        "{{\n    \"ToUserName\": \"gh_97417a04a28d\",\n    \"Encrypt\": \"{V3_ENCRYPT}\"\n}}"
    );

    assert!(signature::verify(
        "6c5c811b55cc85e0e1b54100749188c20beb3f5d",
        &[token, ts, nonce]
    ));
    let env = parse_envelope(body.as_bytes()).unwrap();
    assert_eq!(env.format, Format::Json);
    assert_eq!(env.to_user_name.as_deref(), Some("gh_97417a04a28d"));
    let enc = env.encrypt.unwrap();
    assert_eq!(
        msg_signature(token, ts, nonce, &enc),
        "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3"
    );
    assert!(signature::verify(
        "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3",
        &[token, ts, nonce, &enc]
    ));

    let plain = decrypt(&key(KEY_A), &enc, appid).unwrap();
    assert_eq!(plain.len(), 167);
    assert_eq!(
        plain,
        br#"{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714112445,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}"#
    );
    let (format, m) = parse_message(&plain).unwrap();
    assert_eq!(format, Format::Json);
    assert_eq!(m.from_user_name, "o9AgO5Kd5ggOC-bXrbNODIiE3bGY");
    assert_eq!(m.create_time, 1714112445);
    assert_eq!(
        m.kind,
        MsgKind::Event {
            event: "debug_demo".into(),
            session_from: None,
            event_key: None,
            kf_account: None,
        }
    );
    // The same payload under another appid is refused.
    assert!(decrypt(&key(KEY_A), &enc, "wx0000000000000000").is_err());
}

#[test]
fn v2_plaintext_push_signature_and_body() {
    assert!(signature::verify(
        "899cf89e464efb63f54ddac96b0a0a235f53aa78",
        &["AAAAA", "1714037059", "486452656"]
    ));
    let body = br#"{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714037059,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}"#;
    let (_, m) = parse_message(body).unwrap();
    assert_eq!(
        (m.to_user_name.as_str(), m.kind.type_name()),
        ("gh_97417a04a28d", "event")
    );
}

#[test]
fn v4_mini_program_encrypted_reply_json() {
    let r = seal(
        &key(KEY_A),
        "wxba5fad812f8e6fb9",
        "AAAAA",
        br#"{"demo_resp":"good luck"}"#,
        1713424427,
        "415670741",
        &random("707722b803182950"),
    );
    let expected = EncryptedReply {
        encrypt: "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ==".into(),
        msg_signature: "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1".into(),
        timestamp: 1713424427,
        nonce: "415670741".into(),
    };
    assert_eq!(r, expected);
    let body = encrypted(Format::Json, &r);
    assert_eq!(
        body,
        r#"{"Encrypt":"ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ==","MsgSignature":"1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1","TimeStamp":1713424427,"Nonce":"415670741"}"#
    );
    // What `kefu send` does with it.
    let back = parse_encrypted(body.as_bytes()).unwrap();
    assert!(signature::verify(
        &back.msg_signature,
        &[
            "AAAAA",
            &back.timestamp.to_string(),
            &back.nonce,
            &back.encrypt
        ]
    ));
    assert_eq!(
        decrypt(&key(KEY_A), &back.encrypt, "wxba5fad812f8e6fb9").unwrap(),
        br#"{"demo_resp":"good luck"}"#
    );
}

#[test]
fn v5_official_python_sample_compatible_xml() {
    let (token, ts, nonce) = ("spamtest", "1409735669", "1320562132");
    let appid = "wx2c2769f8efd9abc2";
    let body = "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[abcdteT]]></Content><MsgId>6054768590064713728</MsgId><Encrypt><![CDATA[hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=]]></Encrypt></xml>";

    let env = parse_envelope(body.as_bytes()).unwrap();
    assert_eq!(env.to_user_name.as_deref(), Some("gh_10f6c3c3ac5a"));
    let enc = env.encrypt.unwrap();
    assert_eq!(
        msg_signature(token, ts, nonce, &enc),
        "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
    );
    let plain = decrypt(&key(KEY_G), &enc, appid).unwrap();
    assert_eq!(
        String::from_utf8(plain.clone()).unwrap(),
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[abcdteT]]></Content>\n<MsgId>6054768590064713728</MsgId>\n</xml>"
    );

    let (format, m) = parse_message(&plain).unwrap();
    assert_eq!(format, Format::Xml);
    assert_eq!(m.to_user_name, "gh_10f6c3c3ac5a");
    assert_eq!(m.from_user_name, "oyORnuP8q7ou2gfYjqLzSIWZf0rs");
    assert_eq!(m.create_time, 1409735668);
    assert_eq!(
        m.kind,
        MsgKind::Text {
            content: "abcdteT".into()
        }
    );
    // Beyond 2^53: exact only because it never goes through a float.
    assert_eq!(m.msg_id, Some(MsgId::Number(6054768590064713728)));
    // The compatible body parses to the same message from its plaintext copies.
    assert_eq!(parse_message(body.as_bytes()).unwrap(), (format, m));
}

#[test]
fn v6a_encrypt_chinese_text_with_a_trailing_bits_key() {
    let msg = "我是中文abcd123";
    assert_eq!(msg.len(), 19);
    let enc = encrypt(
        &key(KEY_G),
        msg.as_bytes(),
        "wxb11529c136998cb6",
        &random("aaaabbbbccccdddd"),
    );
    assert_eq!(
        enc,
        "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
    );
    assert_eq!(
        msg_signature("pamtest", "1409304348", "xxxxxx", &enc),
        "82c962d39941aa48552f90ef55aa323dc620cc10"
    );
    assert_eq!(
        decrypt(&key(KEY_G), &enc, "wxb11529c136998cb6").unwrap(),
        msg.as_bytes()
    );
}

#[test]
fn v6b_encrypt_xml_reply() {
    let msg = "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName><FromUserName><![CDATA[gh_7f083739789a]]></FromUserName><CreateTime>1407743423</CreateTime><MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[eYJ1MbwPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId><Title><![CDATA[testCallBackReplyVideo]]></Title><Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>";
    let enc = encrypt(
        &key(KEY_G),
        msg.as_bytes(),
        "wxb11529c136998cb6",
        &random("aaaabbbbccccdddd"),
    );
    assert_eq!(
        enc,
        "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkupqcEcW7ZQweImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSGvDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb"
    );
    // The nested <Video> does not disturb the message parser.
    let (_, m) = parse_message(&decrypt(&key(KEY_G), &enc, "wxb11529c136998cb6").unwrap()).unwrap();
    assert_eq!(
        m.kind,
        MsgKind::Other {
            msg_type: "video".into()
        }
    );
    assert_eq!(m.to_user_name, "oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw");
}

#[test]
fn v7_easywechat_decrypt() {
    let enc = "rTNFcsut4LfGuAFKEUVVpwcaCOTJzOd9twZdIW910jb3k+iicx2uvhttIZ3Qg9Qgty3BEF2xbOrz6boTfb30dMomcgrkTqdFPwnhqbk+kIQ7rZiwny9D7NUrTgA5kpX3KsZvrXzUZyP2x9YOlxbgm572lmxKvM7HAQQhIQ/p6HBmoY30bGXFK0BtIu1pW9TjhOYrLQoU18nWYjWqDA1ynkmOytpv7QRI1P1+0NoxL0q2zO1DgeSvnE8CZGo/o5Ap/WHK5W2RAsinpzN4/LjPnmB6U01I5XCoJoC0GK/yMZycd2Oh8Nq6+wBkC1U85oy0ktOY4nLvsQMLrourmMGdZHuTbqpeJ8Ao/5PRYJ+WBvRUwPfGKBL2+2IKZF49vAJqkcGWSHGE76ZN2erXeuNazf/o9o3lIE3q739o4c8t9QGPe31GT2Go/rOz1BsrASwvauNulCh+++yz+CQzBIuikA==";
    assert!(signature::verify(
        "4f3ad57b6989f09f4eb392acce4f9e93942ed890",
        &["pamtest", "1458300676", "260774613", enc]
    ));
    let plain = decrypt(&key(KEY_G), enc, "wxb11529c136998cb6").unwrap();
    assert_eq!(
        plain,
        b"<xml><URL><![CDATA[http://wechat.laravel.so/server]]></URL><ToUserName><![CDATA[asdasdasd]]></ToUserName><FromUserName><![CDATA[asdasdasdsadasd]]></FromUserName><CreateTime>1234567898</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello]]></Content><MsgId>12345</MsgId></xml>"
    );
    let (_, m) = parse_message(&plain).unwrap();
    assert_eq!(
        (m.to_user_name.as_str(), m.kind, m.msg_id),
        (
            "asdasdasd",
            MsgKind::Text {
                content: "hello".into()
            },
            Some(MsgId::Number(12345))
        )
    );
}

const V8_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const V8_ID: &str = "wx49f0ab532d5d035a";

#[test]
fn v8a_echostr_signature_and_decrypt() {
    let echo =
        "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==";
    let sig = "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96";
    assert!(signature::verify(
        sig,
        &["123456", "1411443780", "437374425", echo]
    ));
    assert!(!signature::verify(
        sig,
        &["123456", "1411443780", "437374424", echo]
    ));
    assert_eq!(
        decrypt(&key(V8_KEY), echo, V8_ID).unwrap(),
        b"5927782489442352469"
    );
}

#[test]
fn v8b_decrypt_message() {
    let enc = "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=";
    assert!(signature::verify(
        "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
        &["123456", "1411525903", "461056294", enc]
    ));
    let (_, m) = parse_message(&decrypt(&key(V8_KEY), enc, V8_ID).unwrap()).unwrap();
    assert_eq!(m.from_user_name, "messense");
    assert_eq!(
        m.kind,
        MsgKind::Text {
            content: "test".into()
        }
    );
    assert_eq!(m.msg_id, Some(MsgId::Number(4363689963896700987)));
}

#[test]
fn v8c_encrypt_reply() {
    let msg = "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>";
    let r = seal(
        &key(V8_KEY),
        V8_ID,
        "123456",
        msg.as_bytes(),
        1411525903,
        "461056294",
        &random("1234567890123456"),
    );
    assert_eq!(
        r.encrypt,
        "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
    );
    assert_eq!(r.msg_signature, "407518b7649e86ef23978113f92d27afa9296533");
}

#[test]
fn v9_wecom_encrypted_echostr() {
    let echo =
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
    assert!(signature::verify(
        "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
        &["QDG6eK", "1409659589", "263014780", echo]
    ));
    let k = key("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C");
    assert_eq!(
        decrypt(&k, echo, "wx5823bf96d3bd56c7").unwrap(),
        b"1616140317555161061"
    );
}

#[test]
fn v10_third_party_safe_mode_xml_and_reply() {
    let (token, ts, nonce) = ("AAAAA", "1715943329", "1590219412");
    let appid = "wx134c8103faa5a59e";
    let enc = "D7yzvUNAL930rd28wf21s4hvXhz0L6Uit/p2Di6C5DHyYGpEgdBRnKjBec34JwoQXicwaZC7fOVihW80F4VtsdvE//1vr7oAbqjDv8KenVp+ajKYpJnyQ4zMRhIC+a31fCVOMC03FfzV/QuC94kBP55a+Za3sJgvAn+ZbsNqZI5DkyuzkhQN8OBqCzFhizGmy0xpM0MEA4agpvE+RuNO1rhHTtuJB5yltw1FiYzecSXJ+y/D2r81VkRn2eYjh2ltsoyfbDR7Is6ookXIFxTfyeNyeHxMeT4KN5WpCDmSbTcUYrbBUlkGLJ9n/rU8YOywma6G7aTb7KZKOqCxgfoUlYEZPk4FUL/TK7ShriFDMVCLyjQJ15Ob++agDWtcxhfUfe6HIoIpRW8mKNBQiY/Jd1svvuskA1wLef1RTtzKfMpagSCX/laZINmdnX4zrF6kIaR9P4xQrWXbsTFHTYe0Mg==";
    let body = render_envelope(Format::Xml, "gh_97417a04a28d", enc);

    assert!(signature::verify(
        "cc0c594499c1634947d5b502f158ee518947db27",
        &[token, ts, nonce]
    ));
    let env = parse_envelope(body.as_bytes()).unwrap();
    let enc = env.encrypt.unwrap();
    assert!(signature::verify(
        "6c12a4205838198b8fa631b3220723bb07f1015c",
        &[token, ts, nonce, &enc]
    ));
    let plain = decrypt(&key(KEY_A), &enc, appid).unwrap();
    assert_eq!(plain.len(), 292);
    let text = std::str::from_utf8(&plain).unwrap();
    assert!(
        text.starts_with(
            "<xml><ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>\n<FromUserName>"
        )
    );
    assert!(text.ends_with("<Event><![CDATA[debug_demo]]></Event>\n<debug_str><![CDATA[hello world]]></debug_str>\n</xml>"));
    let (format, m) = parse_message(&plain).unwrap();
    assert_eq!(format, Format::Xml);
    assert!(matches!(m.kind, MsgKind::Event { ref event, .. } if event == "debug_demo"));

    let r = seal(
        &key(KEY_A),
        appid,
        token,
        b"<xml><demo_resp>[CDATA[good luck]]</demo_resp></xml>",
        1713424427,
        "415670741",
        &random("999951349e8ee746"),
    );
    assert_eq!(
        r.encrypt,
        "hE8R6mGXHkJJjU72KxzKUd1GEkKJaEZq7vRL8XgK3o+00k8JGq6+pZJUIlTSyhsX+bxIBQ72g3GyvDdIZcr6+3HAZbSvPT9t/o11MI7d6WELwqrGd7jMnV0zv3Zc9Nq7"
    );
    assert_eq!(r.msg_signature, "03e0812039325c2712ef5f0f980fd14c70d6e307");
    let xml = encrypted(Format::Xml, &r);
    assert_eq!(
        xml,
        format!(
            "<xml>\n<Encrypt><![CDATA[{}]]></Encrypt>\n<MsgSignature><![CDATA[03e0812039325c2712ef5f0f980fd14c70d6e307]]></MsgSignature>\n<TimeStamp>1713424427</TimeStamp>\n<Nonce><![CDATA[415670741]]></Nonce>\n</xml>",
            r.encrypt
        )
    );
    assert_eq!(parse_encrypted(xml.as_bytes()).unwrap(), r);
}
