//! A bounded in-memory record of the sends dry-run apps would have made, for the operator
//! console and tests. Nothing here touches the network or disk.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::outbound::OutboundMessage;

/// One send a dry-run app would have made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DryRunSend {
    /// When `deliver` was called (serialized as RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// The kefu app id (config `apps[].id`), not the WeChat appid.
    pub app_id: String,
    /// The user it was for.
    pub openid: String,
    /// WeChat's `msgtype`: text, image, link or miniprogrampage.
    pub msgtype: &'static str,
    /// The message as decided.
    pub message: OutboundMessage,
    /// The exact JSON body that `custom/send` would have received.
    pub body: String,
}

fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The last `capacity` dry-run sends, oldest first.
#[derive(Debug)]
pub(crate) struct DryRunLog {
    /// How many entries are kept; older ones are dropped.
    capacity: usize,
    /// The entries, oldest at the front.
    entries: Mutex<VecDeque<DryRunSend>>,
}

impl DryRunLog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
        }
    }

    pub(crate) fn push(&self, send: DryRunSend) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        while entries.len() >= self.capacity {
            entries.pop_front();
        }
        entries.push_back(send);
    }

    pub(crate) fn snapshot(&self) -> Vec<DryRunSend> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(n: usize) -> DryRunSend {
        DryRunSend {
            at: Utc::now(),
            app_id: "demo".into(),
            openid: format!("o{n}"),
            msgtype: "text",
            message: OutboundMessage::text("hi"),
            body: "{}".into(),
        }
    }

    #[test]
    fn keeps_only_the_last_capacity_entries_oldest_first() {
        let log = DryRunLog::new(3);
        for n in 0..5 {
            log.push(send(n));
        }
        let openids: Vec<String> = log.snapshot().into_iter().map(|s| s.openid).collect();
        assert_eq!(openids, ["o2", "o3", "o4"]);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let log = DryRunLog::new(0);
        log.push(send(0));
        assert!(log.snapshot().is_empty());
    }
}
