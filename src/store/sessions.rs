//! Per-user sessions (a pending clarify menu, a sticky handoff): the in-memory map behind
//! [`Store::session`](super::Store::session) and their rows on disk.
//!
//! The map holds exactly what is durable: the writer thread updates it after a batch commits, so a
//! session read never shows state a crash could take back. Every session is loaded at open (they
//! live minutes), so they survive a restart. A session whose menu and handoff have both expired
//! is the default session and is deleted. Lock poisoning is ignored, as in [`super::dedupe`].

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use rusqlite::{Connection, Transaction, params};

use super::schema::backend;
use super::{Session, StoreError};

/// What is left of a session at `now` ([`Session::live`]).
pub fn live(session: &Session, now: i64) -> Session {
    session.live(now)
}

/// When the session stops mattering ([`Session::expires_at`]).
pub fn expires_at(session: &Session) -> Option<i64> {
    session.expires_at()
}

/// Sessions by app, then openid (two levels, so a lookup borrows `&str` without allocating).
#[derive(Default)]
pub struct SessionCache {
    /// The durable sessions.
    apps: RwLock<HashMap<String, HashMap<String, Session>>>,
}

impl SessionCache {
    /// The user's session at `now` (default when none).
    pub fn get(&self, app: &str, openid: &str, now: i64) -> Session {
        let apps = self.apps.read().unwrap_or_else(PoisonError::into_inner);
        apps.get(app)
            .and_then(|users| users.get(openid))
            .map(|s| live(s, now))
            .unwrap_or_default()
    }

    /// Applies durable updates; `None` (or a session with nothing left) removes.
    pub fn apply<'a>(&self, updates: impl IntoIterator<Item = (&'a str, &'a str, &'a Session)>) {
        let mut apps = self.apps.write().unwrap_or_else(PoisonError::into_inner);
        for (app, openid, session) in updates {
            if expires_at(session).is_some() {
                apps.entry(app.to_string())
                    .or_default()
                    .insert(openid.to_string(), session.clone());
            } else if let Some(users) = apps.get_mut(app) {
                users.remove(openid);
            }
        }
    }

    /// Drops sessions that have expired.
    pub fn sweep(&self, now: i64) {
        let mut apps = self.apps.write().unwrap_or_else(PoisonError::into_inner);
        for users in apps.values_mut() {
            users.retain(|_, s| expires_at(s).is_some_and(|t| t > now));
        }
        apps.retain(|_, users| !users.is_empty());
    }

    /// Number of sessions held.
    pub fn len(&self) -> usize {
        let apps = self.apps.read().unwrap_or_else(PoisonError::into_inner);
        apps.values().map(HashMap::len).sum()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads every session that has not expired at `now`.
    pub fn load(&self, conn: &Connection, now: i64) -> Result<usize, StoreError> {
        let mut stmt = conn
            .prepare("SELECT app, openid, data FROM sessions WHERE expires_at > ?1")
            .map_err(backend)?;
        let rows = stmt
            .query_map([now], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(backend)?;
        let mut loaded = Vec::new();
        for row in rows {
            let (app, openid, data) = row.map_err(backend)?;
            match serde_json::from_str::<Session>(&data) {
                Ok(s) => loaded.push((app, openid, s)),
                Err(e) => {
                    tracing::warn!(%app, %openid, error = %e, "store: unreadable session skipped")
                }
            }
        }
        self.apply(loaded.iter().map(|(a, o, s)| (a.as_str(), o.as_str(), s)));
        Ok(loaded.len())
    }
}

/// Writes a user's session (deletes it when it is the default).
pub fn save(
    tx: &Transaction<'_>,
    app: &str,
    openid: &str,
    session: &Session,
) -> Result<(), StoreError> {
    match expires_at(session) {
        Some(expires) => {
            let data = serde_json::to_string(session).map_err(backend)?;
            tx.prepare_cached(
                "INSERT INTO sessions (app, openid, data, expires_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (app, openid) DO UPDATE SET data = excluded.data, \
                 expires_at = excluded.expires_at",
            )
            .and_then(|mut s| s.execute(params![app, openid, data, expires]))
            .map_err(backend)?;
        }
        None => {
            tx.prepare_cached("DELETE FROM sessions WHERE app = ?1 AND openid = ?2")
                .and_then(|mut s| s.execute(params![app, openid]))
                .map_err(backend)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Menu;

    fn menu(expires_at: i64) -> Session {
        Session {
            menu: Some(Menu {
                options: vec!["a".into(), "b".into()],
                expires_at,
                question: None,
            }),
            handoff_until: None,
            last_faq: None,
            ..Session::default()
        }
    }

    #[test]
    fn expired_parts_are_not_returned() {
        let c = SessionCache::default();
        let s = Session {
            handoff_until: Some(200),
            ..menu(100)
        };
        c.apply([("app", "u", &s)]);
        assert_eq!(c.get("app", "u", 50), s);
        assert_eq!(
            c.get("app", "u", 150),
            Session {
                menu: None,
                handoff_until: Some(200),
                last_faq: None,
                ..Session::default()
            }
        );
        assert_eq!(c.get("app", "u", 250), Session::default());
        assert_eq!(c.get("other", "u", 50), Session::default());
    }

    #[test]
    fn a_last_faq_answer_keeps_the_session_until_it_expires() {
        let c = SessionCache::default();
        let s = Session {
            last_faq: Some(crate::store::LastFaq {
                faq: "mp-dereg-general".into(),
                expires_at: 300,
            }),
            ..Session::default()
        };
        assert_eq!(expires_at(&s), Some(300));
        c.apply([("app", "u", &s)]);
        assert_eq!(c.get("app", "u", 299), s);
        assert_eq!(c.get("app", "u", 300), Session::default());
        c.sweep(300);
        assert!(c.is_empty());
    }

    #[test]
    fn default_session_removes_and_sweep_forgets_expired() {
        let c = SessionCache::default();
        c.apply([("app", "u", &menu(100)), ("app", "v", &menu(300))]);
        c.apply([("app", "u", &Session::default())]);
        assert_eq!(c.len(), 1);
        c.sweep(300);
        assert!(c.is_empty());
    }
}
