//! One emitter for the flat messages WeChat exchanges, in either format: `<xml>` with CDATA
//! text elements, or a JSON object. Every body kefu writes (passive replies, the encrypted
//! envelope, the pushes `kefu send` builds) is a list of named text and number fields in an
//! order the protocol doc's samples show; the format is chosen once, here.

use super::Format;
use super::{json, xml};

/// Writes one message, field by field.
pub struct Emitter {
    out: String,
    format: Format,
}

impl Emitter {
    /// Starts a message; `capacity` is a size hint for the whole body.
    pub fn new(format: Format, capacity: usize) -> Self {
        let mut out = String::with_capacity(capacity);
        out.push_str(match format {
            Format::Xml => "<xml>\n",
            Format::Json => "{",
        });
        Self { out, format }
    }

    /// A text field (CDATA in XML, a string in JSON).
    pub fn text(&mut self, name: &str, value: &str) -> &mut Self {
        match self.format {
            Format::Xml => xml::push_cdata_element(&mut self.out, name, value),
            Format::Json => json::push_str_member(&mut self.out, name, value),
        }
        self
    }

    /// A number field.
    pub fn number(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Self {
        match self.format {
            Format::Xml => xml::push_number_element(&mut self.out, name, value),
            Format::Json => json::push_number_member(&mut self.out, name, value),
        }
        self
    }

    /// Closes the message and returns it.
    pub fn finish(mut self) -> String {
        self.out.push_str(match self.format {
            Format::Xml => "</xml>",
            Format::Json => "}",
        });
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats() {
        let body = |format| {
            let mut e = Emitter::new(format, 64);
            e.text("MsgType", "text").number("CreateTime", 7);
            e.finish()
        };
        assert_eq!(
            body(Format::Xml),
            "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<CreateTime>7</CreateTime>\n</xml>"
        );
        assert_eq!(body(Format::Json), r#"{"MsgType":"text","CreateTime":7}"#);
    }
}
