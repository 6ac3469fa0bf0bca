//! An in-memory [`Store`]: nothing survives the process. Used by tests of the request path and
//! as the smallest second implementation of the trait (the shape a shared backend follows).
//! Outbox entries are kept in a list for inspection; nothing sends them.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::{oneshot, watch};

use super::{
    Claim, CommitReport, CommitTicket, Memo, PushKey, PushRecord, Session, Store, StoreError,
};
use crate::outbound::OutboundMessage;

enum Entry {
    InFlight(watch::Sender<Option<Memo>>),
    Done(Memo),
}

#[derive(Default)]
struct Inner {
    dedupe: HashMap<PushKey, Entry>,
    sessions: HashMap<(String, String), Session>,
    outbox: Vec<(String, String, OutboundMessage)>,
}

/// See the module docs.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every queued `(app, openid, message)`, in commit order.
    pub fn queued(&self) -> Vec<(String, String, OutboundMessage)> {
        self.lock().map(|i| i.outbox.clone()).unwrap_or_default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }
}

impl Store for MemoryStore {
    fn claim(&self, key: &PushKey, _now: i64) -> Result<Claim, StoreError> {
        let mut inner = self.lock()?;
        match inner.dedupe.get(key) {
            Some(Entry::Done(memo)) => Ok(Claim::Done(memo.clone())),
            Some(Entry::InFlight(tx)) => Ok(Claim::InFlight(tx.subscribe())),
            None => {
                let (tx, _) = watch::channel(None);
                inner.dedupe.insert(key.clone(), Entry::InFlight(tx));
                Ok(Claim::New)
            }
        }
    }

    fn abandon(&self, key: &PushKey) {
        if let Ok(mut inner) = self.lock()
            && matches!(inner.dedupe.get(key), Some(Entry::InFlight(_)))
        {
            inner.dedupe.remove(key);
        }
    }

    fn session(&self, app: &str, openid: &str, _now: i64) -> Result<Session, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .sessions
            .get(&(app.to_string(), openid.to_string()))
            .cloned()
            .unwrap_or_default())
    }

    fn commit(&self, record: PushRecord) -> CommitTicket {
        let (tx, rx) = oneshot::channel();
        let result = self.lock().map(|mut inner| {
            if let Some(session) = record.session {
                inner
                    .sessions
                    .insert((record.app.clone(), record.openid.clone()), session);
            }
            let queued = record.outbox.len();
            for m in record.outbox {
                inner
                    .outbox
                    .push((record.app.clone(), record.openid.clone(), m));
            }
            if let Some(Entry::InFlight(waiters)) = inner
                .dedupe
                .insert(record.key, Entry::Done(record.memo.clone()))
            {
                let _ = waiters.send(Some(record.memo));
            }
            CommitReport {
                queued,
                dropped: Vec::new(),
            }
        });
        let _ = tx.send(result);
        rx
    }
}
