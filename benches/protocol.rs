//! Criterion benches of the protocol hot path: what every push costs before the rules run.
//!
//! Signature checks, the decryption of a ~300-byte safe-mode push, parsing the push in XML
//! (the shape of `shared/bench/common/msg.xml`) and JSON, and rendering the transfer reply.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kefu::protocol::crypto::{self, AesKey};
use kefu::protocol::message::{self, Format};
use kefu::protocol::{reply, signature};

/// The push of `shared/bench/common/msg.xml`, verbatim.
const MSG_XML: &str = "<xml>
<ToUserName><![CDATA[gh_0123456789ab]]></ToUserName>
<FromUserName><![CDATA[oBench_u8x2Kq9ZpYbN3vLm7TtR0aWc]]></FromUserName>
<CreateTime>1764230400</CreateTime>
<MsgType><![CDATA[text]]></MsgType>
<Content><![CDATA[请问个体户怎么注销小程序]]></Content>
<MsgId>24912345678901234</MsgId>
</xml>
";

const MSG_JSON: &str = r#"{"ToUserName":"gh_0123456789ab","FromUserName":"oBench_u8x2Kq9ZpYbN3vLm7TtR0aWc","CreateTime":1764230400,"MsgType":"text","Content":"请问个体户怎么注销小程序","MsgId":24912345678901234}"#;

const TOKEN: &str = "demo-token";
const APPID: &str = "wx0000000000000000";
const TIMESTAMP: &str = "1764230400";
const NONCE: &str = "1514711492";

fn benches(c: &mut Criterion) {
    let key = AesKey::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
        .unwrap_or_else(|e| panic!("{e}"));
    let encrypt = crypto::encrypt(&key, MSG_XML.as_bytes(), APPID, b"aaaabbbbccccdddd");
    let envelope = message::render_envelope(Format::Xml, "gh_0123456789ab", &encrypt);
    let sig = signature::sign(&[TOKEN, TIMESTAMP, NONCE]);
    let msg_sig = crypto::msg_signature(TOKEN, TIMESTAMP, NONCE, &encrypt);

    c.bench_function("signature_verify", |b| {
        b.iter(|| signature::verify(black_box(&sig), black_box(&[TOKEN, TIMESTAMP, NONCE])))
    });
    c.bench_function("msg_signature_verify", |b| {
        b.iter(|| {
            signature::verify(
                black_box(&msg_sig),
                black_box(&[TOKEN, TIMESTAMP, NONCE, &encrypt]),
            )
        })
    });
    c.bench_function("decrypt_300b_push", |b| {
        b.iter(|| crypto::decrypt(black_box(&key), black_box(&encrypt), APPID))
    });
    c.bench_function("parse_xml_push", |b| {
        b.iter(|| message::parse_message(black_box(MSG_XML.as_bytes())))
    });
    c.bench_function("parse_json_push", |b| {
        b.iter(|| message::parse_message(black_box(MSG_JSON.as_bytes())))
    });
    c.bench_function("safe_mode_xml_end_to_end", |b| {
        b.iter(|| {
            let env = message::parse_envelope(black_box(envelope.as_bytes())).ok()?;
            let enc = env.encrypt?;
            signature::verify(&msg_sig, &[TOKEN, TIMESTAMP, NONCE, &enc]).then_some(())?;
            let plain = crypto::decrypt(&key, &enc, APPID).ok()?;
            message::parse_message(&plain).ok()
        })
    });
    c.bench_function("render_transfer_xml", |b| {
        b.iter(|| {
            reply::transfer(
                Format::Xml,
                black_box("oBench_u8x2Kq9ZpYbN3vLm7TtR0aWc"),
                black_box("gh_0123456789ab"),
                1764230400,
            )
        })
    });
    c.bench_function("render_transfer_json", |b| {
        b.iter(|| {
            reply::transfer(
                Format::Json,
                black_box("oBench_u8x2Kq9ZpYbN3vLm7TtR0aWc"),
                black_box("gh_0123456789ab"),
                1764230400,
            )
        })
    });
    c.bench_function("seal_transfer_reply", |b| {
        let body = reply::transfer(
            Format::Xml,
            "oBench_u8x2Kq9ZpYbN3vLm7TtR0aWc",
            "gh_0123456789ab",
            1764230400,
        );
        b.iter(|| {
            crypto::seal(
                &key,
                APPID,
                TOKEN,
                black_box(body.as_bytes()),
                1764230400,
                NONCE,
                b"aaaabbbbccccdddd",
            )
        })
    });
}

criterion_group!(protocol, benches);
criterion_main!(protocol);
