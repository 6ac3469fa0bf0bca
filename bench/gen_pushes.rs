//! Generates signed (and, in safe mode, encrypted) pushes for the load benchmark, one request
//! per line: `PATH_AND_QUERY<TAB>BODY`. Every push has its own MsgId and openid, as real traffic
//! has, so that dedupe and quotas do the full work.
//!
//! cargo run --release --example gen-pushes -- <xml|json> <plaintext|safe> <count> <token> <aes_key> <appid> <path>

use kefu::config::Mode;
use kefu::protocol::{Format, InboundMessage, MsgId, MsgKind, crypto, message, signature};
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 8 {
        eprintln!(
            "usage: gen-pushes <xml|json> <plaintext|safe> <count> <token> <aes_key> <appid> <path>"
        );
        std::process::exit(2);
    }
    let format = if args[1] == "json" {
        Format::Json
    } else {
        Format::Xml
    };
    let mode = if args[2] == "safe" {
        Mode::Safe
    } else {
        Mode::Plaintext
    };
    let count: u64 = args[3].parse()?;
    let (token, aes_key, appid, path) = (&args[4], &args[5], &args[6], &args[7]);
    let key = crypto::AesKey::parse(aes_key).map_err(|e| format!("aes key: {e}"))?;
    let ts = chrono::Utc::now().timestamp().to_string();
    let nonce = "1234567890";
    let sig = signature::sign(&[token, &ts, nonce]);
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for i in 0..count {
        let msg = InboundMessage {
            to_user_name: "gh_bench000000".into(),
            from_user_name: format!("oBench_{i:012}").into(),
            create_time: 1_764_201_600,
            msg_id: Some(MsgId::Number(7_000_000_000_000_000 + i)),
            kind: MsgKind::Text {
                content: "请问个体户怎么注销小程序".into(),
            },
        };
        let plain = message::render_push(format, &msg);
        let (query, body) = match mode {
            Mode::Safe => {
                let random = (i as u128).to_le_bytes();
                let encrypt = crypto::encrypt(&key, plain.as_bytes(), appid, &random);
                let msg_sig = signature::sign(&[token, &ts, nonce, &encrypt]);
                (
                    format!(
                        "signature={sig}&timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={msg_sig}"
                    ),
                    message::render_envelope(format, &msg.to_user_name, &encrypt),
                )
            }
            _ => (
                format!("signature={sig}&timestamp={ts}&nonce={nonce}"),
                plain,
            ),
        };
        writeln!(out, "{path}?{query}\t{}", body.replace(['\n', '\t'], " "))?;
    }
    Ok(())
}
