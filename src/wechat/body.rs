//! The JSON bodies of `custom/send` (protocol doc §6.2), built from an [`OutboundMessage`].
//!
//! Pure, no I/O. `serde_json` writes raw UTF-8 and escapes only `"`, `\` and control
//! characters, never `<`, `>`, `&` or non-ASCII as `\uXXXX`, which WeChat has refused (40033)
//! or displayed wrongly (protocol doc §8.1); a test pins that.

use serde::Serialize;

use crate::outbound::OutboundMessage;

/// `{"touser":…,"msgtype":…,"<msgtype>":{…}}`; exactly one payload field is set.
#[derive(Serialize)]
struct SendBody<'a> {
    /// The user's openid.
    touser: &'a str,
    /// Names the payload field that follows.
    msgtype: &'static str,
    /// `{"content":…}`
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Text<'a>>,
    /// `{"media_id":…}`
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<Image<'a>>,
    /// `{"title","description","url","thumb_url"}`
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<Link<'a>>,
    /// `{"title","pagepath","thumb_media_id"}`
    #[serde(skip_serializing_if = "Option::is_none")]
    miniprogrampage: Option<MiniProgramPage<'a>>,
}

#[derive(Serialize)]
struct Text<'a> {
    /// The text; may hold `<a href data-miniprogram-…>` links, sent unescaped.
    content: &'a str,
}

#[derive(Serialize)]
struct Image<'a> {
    /// A temporary media id (valid 3 days).
    media_id: &'a str,
}

#[derive(Serialize)]
struct Link<'a> {
    /// Card title.
    title: &'a str,
    /// Card description.
    description: &'a str,
    /// Where a tap leads.
    url: &'a str,
    /// Card picture URL.
    thumb_url: &'a str,
}

#[derive(Serialize)]
struct MiniProgramPage<'a> {
    /// Card title.
    title: &'a str,
    /// The page opened, with its query.
    pagepath: &'a str,
    /// Cover picture, a temporary media id.
    thumb_media_id: &'a str,
}

/// The `msgtype` WeChat expects for a message.
pub fn msgtype(message: &OutboundMessage) -> &'static str {
    match message {
        OutboundMessage::Text { .. } => "text",
        OutboundMessage::Image { .. } => "image",
        OutboundMessage::Link { .. } => "link",
        OutboundMessage::MiniProgramPage { .. } => "miniprogrampage",
        OutboundMessage::ImageFile { .. } => "image",
        OutboundMessage::MiniProgramPageFile { .. } => "miniprogrampage",
        OutboundMessage::Fetch(_) => "text",
    }
}

/// The `custom/send` request body for one message to one user, as UTF-8 JSON text.
pub fn send_body(openid: &str, message: &OutboundMessage) -> Result<String, serde_json::Error> {
    let mut body = SendBody {
        touser: openid,
        msgtype: msgtype(message),
        text: None,
        image: None,
        link: None,
        miniprogrampage: None,
    };
    match message {
        OutboundMessage::Text { content } => body.text = Some(Text { content }),
        OutboundMessage::Image { media_id } => body.image = Some(Image { media_id }),
        OutboundMessage::Link {
            title,
            description,
            url,
            thumb_url,
        } => {
            body.link = Some(Link {
                title,
                description,
                url,
                thumb_url,
            })
        }
        OutboundMessage::MiniProgramPage {
            title,
            pagepath,
            thumb_media_id,
        } => {
            body.miniprogrampage = Some(MiniProgramPage {
                title,
                pagepath,
                thumb_media_id,
            })
        }
        // Prepared by the outbox worker (upload, fetch) before they reach the client.
        OutboundMessage::ImageFile { .. }
        | OutboundMessage::MiniProgramPageFile { .. }
        | OutboundMessage::Fetch(_) => {
            return Err(serde::ser::Error::custom(
                "the message must be prepared (uploaded or fetched) before it is sent",
            ));
        }
    }
    serde_json::to_string(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_protocol_doc_examples() {
        let cases = [
            (
                OutboundMessage::text("Hello World"),
                r#"{"touser":"OPENID","msgtype":"text","text":{"content":"Hello World"}}"#,
            ),
            (
                OutboundMessage::Image {
                    media_id: "MEDIA_ID".into(),
                },
                r#"{"touser":"OPENID","msgtype":"image","image":{"media_id":"MEDIA_ID"}}"#,
            ),
            (
                OutboundMessage::Link {
                    title: "Happy Day".into(),
                    description: "Is Really A Happy Day".into(),
                    url: "URL".into(),
                    thumb_url: "THUMB_URL".into(),
                },
                r#"{"touser":"OPENID","msgtype":"link","link":{"title":"Happy Day","description":"Is Really A Happy Day","url":"URL","thumb_url":"THUMB_URL"}}"#,
            ),
            (
                OutboundMessage::MiniProgramPage {
                    title: "title".into(),
                    pagepath: "pages/index/index?foo=bar".into(),
                    thumb_media_id: "THUMB_MEDIA_ID".into(),
                },
                r#"{"touser":"OPENID","msgtype":"miniprogrampage","miniprogrampage":{"title":"title","pagepath":"pages/index/index?foo=bar","thumb_media_id":"THUMB_MEDIA_ID"}}"#,
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(send_body("OPENID", &message).unwrap(), expected);
        }
    }

    #[test]
    fn text_is_raw_utf8_without_unicode_escapes() {
        let content = "您好 <a href=\"http://www.qq.com\" data-miniprogram-path=\"a?x=1&y=2\">点我</a> 😀\n\"q\"";
        let body = send_body("o1", &OutboundMessage::text(content)).unwrap();
        assert!(!body.contains("\\u"), "{body}");
        assert!(
            body.contains("您好 <a href=\\\"http://www.qq.com\\\""),
            "{body}"
        );
        assert!(body.contains("a?x=1&y=2"), "{body}");
        assert!(body.contains("😀\\n\\\"q\\\""), "{body}");
        let back: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(back["text"]["content"], content);
    }
}
