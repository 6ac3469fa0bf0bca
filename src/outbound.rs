//! Messages kefu sends to a user: through the customer-service send API (Mini Programs, and
//! official accounts beyond the first reply) or, for an official account's first text, passively
//! in the HTTP response.
//!
//! The serde form is what the outbox stores; the WeChat request body is built by [`crate::wechat`].

use serde::{Deserialize, Serialize};

/// One message to one user, as decided by a rule or the FAQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutboundMessage {
    Text {
        content: String,
    },
    Image {
        media_id: String,
    },
    Link {
        title: String,
        description: String,
        url: String,
        thumb_url: String,
    },
    #[serde(rename = "miniprogrampage")]
    MiniProgramPage {
        title: String,
        pagepath: String,
        thumb_media_id: String,
    },
}

impl OutboundMessage {
    pub fn text(content: impl Into<String>) -> Self {
        Self::Text {
            content: content.into(),
        }
    }

    /// What an operator or `kefu try` sees of the message.
    pub fn preview(&self) -> String {
        match self {
            Self::Text { content } => content.clone(),
            Self::Image { media_id } => format!("[image {media_id}]"),
            Self::Link { title, url, .. } => format!("[link {title} {url}]"),
            Self::MiniProgramPage {
                title, pagepath, ..
            } => format!("[miniprogrampage {title} {pagepath}]"),
        }
    }
}
