//! Send windows (SPEC §6, protocol doc §6.3): how many messages WeChat still lets an app send one
//! user, and until when.
//!
//! The window does not accumulate: each trigger (a user message, entering the chat) *resets* the
//! allowance to that trigger's maximum for that trigger's window, whatever was left before.
//! Admission happens at commit, in the writer thread, which alone owns the [`QuotaBook`]; so
//! pushes of one user are admitted in commit order without locks. Pure logic first, SQL after.

use foldhash::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::schema::backend;
use super::{QuotaTrigger, StoreError};
use serde::Deserialize;

/// How many messages WeChat lets an app send one user (SPEC §6; protocol doc §6.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaSettings {
    /// Messages allowed after a user message…
    pub per_user_message: u32,
    /// …within this many seconds of it (48 h).
    pub user_message_window_secs: u64,
    /// Messages allowed after `user_enter_tempsession`…
    pub per_session_enter: u32,
    /// …within this many seconds of it (1 min).
    pub session_enter_window_secs: u64,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            per_user_message: 5,
            user_message_window_secs: 48 * 3600,
            per_session_enter: 2,
            session_enter_window_secs: 60,
        }
    }
}

/// One user's open send window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// What opened the window (for the reason of a drop).
    pub trigger: QuotaTrigger,
    /// Messages allowed in the window.
    pub limit: u32,
    /// Messages already admitted.
    pub used: u32,
    /// Unix seconds at which the window closes (exclusive).
    pub until: i64,
}

impl Window {
    /// The window a trigger at `at` opens: a reset, never an addition.
    pub fn open(trigger: QuotaTrigger, at: i64, settings: &QuotaSettings) -> Self {
        let (limit, secs) = match trigger {
            QuotaTrigger::UserMessage => {
                (settings.per_user_message, settings.user_message_window_secs)
            }
            QuotaTrigger::SessionEnter => (
                settings.per_session_enter,
                settings.session_enter_window_secs,
            ),
        };
        Self {
            trigger,
            limit,
            used: 0,
            until: at.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX)),
        }
    }

    /// Whether the window is still open at `now`.
    pub fn is_open(&self, now: i64) -> bool {
        now < self.until
    }
}

/// What [`admit`] decided for one push's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The first `admitted` messages may be queued.
    pub admitted: usize,
    /// Why the rest may not (`None` when all were admitted).
    pub reason: Option<String>,
    /// The window after admission; `None` when there is none.
    pub window: Option<Window>,
}

/// Applies an optional trigger at `now`, then admits as many of `wanted` messages as the window
/// allows.
pub fn admit(
    current: Option<Window>,
    trigger: Option<QuotaTrigger>,
    now: i64,
    wanted: usize,
    settings: &QuotaSettings,
) -> Admission {
    let window = match trigger {
        Some(t) => Some(Window::open(t, now, settings)),
        None => current.filter(|w| w.is_open(now)),
    };
    let Some(mut w) = window else {
        return Admission {
            admitted: 0,
            reason: (wanted > 0).then(|| {
                "over quota: no send window is open (the user has neither written nor entered \
                 the chat recently enough)"
                    .to_string()
            }),
            window: None,
        };
    };
    let left = w.limit.saturating_sub(w.used) as usize;
    let admitted = wanted.min(left);
    w.used = w.used.saturating_add(admitted as u32);
    let reason = (admitted < wanted).then(|| {
        let what = match w.trigger {
            QuotaTrigger::UserMessage => "the user's last message",
            QuotaTrigger::SessionEnter => "the user entering the chat",
        };
        format!(
            "over quota: WeChat allows {} messages after {what} and they are used",
            w.limit
        )
    });
    Admission {
        admitted,
        reason,
        window: Some(w),
    }
}

/// A user in a batch's pending changes, borrowed from the batch's records.
pub type UserRef<'a> = (&'a str, &'a str);

/// A batch's changes to the windows, by user, applied once the batch commits.
///
/// This map and [`QuotaBook`]'s are hashed with foldhash rather than std's SipHash, which spent
/// most of a look-up on these short keys (the writer looks a user up twice per push). foldhash is
/// seeded per process: enough resistance for keys that only WeChat's signed pushes can name.
pub type Overlay<'a> = HashMap<UserRef<'a>, Option<Window>>;

/// Every open window, by app and openid. Owned by the writer thread.
#[derive(Debug, Default)]
pub struct QuotaBook {
    /// Windows as committed, by app, then openid: a look-up by `&str` allocates nothing.
    windows: HashMap<String, HashMap<String, Window>>,
}

impl QuotaBook {
    /// The committed window of a user.
    pub fn get(&self, app: &str, openid: &str) -> Option<Window> {
        self.windows.get(app)?.get(openid).copied()
    }

    /// Makes a batch's changes part of the committed state.
    pub fn apply(&mut self, changes: Overlay<'_>) {
        for ((app, openid), w) in changes {
            match w {
                Some(w) => {
                    let users = match self.windows.get_mut(app) {
                        Some(users) => users,
                        None => self.windows.entry(app.to_owned()).or_default(),
                    };
                    match users.get_mut(openid) {
                        Some(slot) => *slot = w,
                        None => {
                            users.insert(openid.to_owned(), w);
                        }
                    }
                }
                None => {
                    if let Some(users) = self.windows.get_mut(app) {
                        users.remove(openid);
                    }
                }
            }
        }
    }

    /// Forgets closed windows.
    pub fn sweep(&mut self, now: i64) {
        for users in self.windows.values_mut() {
            users.retain(|_, w| w.is_open(now));
        }
        self.windows.retain(|_, users| !users.is_empty());
    }

    /// Number of open windows held.
    pub fn len(&self) -> usize {
        self.windows.values().map(HashMap::len).sum()
    }

    /// Whether no window is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads the windows still open at `now`.
    pub fn load(conn: &Connection, now: i64) -> Result<Self, StoreError> {
        let mut stmt = conn
            .prepare("SELECT app, openid, trigger, lim, used, until FROM quota WHERE until > ?1")
            .map_err(backend)?;
        let rows = stmt
            .query_map([now], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    r.get::<_, String>(2)?,
                    r.get::<_, u32>(3)?,
                    r.get::<_, u32>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(backend)?;
        let mut windows: HashMap<String, HashMap<String, Window>> = HashMap::default();
        for row in rows {
            let ((app, openid), trigger, limit, used, until) = row.map_err(backend)?;
            let Some(trigger) = trigger_from_str(&trigger) else {
                continue;
            };
            windows.entry(app).or_default().insert(
                openid,
                Window {
                    trigger,
                    limit,
                    used,
                    until,
                },
            );
        }
        Ok(Self { windows })
    }
}

fn trigger_str(t: QuotaTrigger) -> &'static str {
    match t {
        QuotaTrigger::UserMessage => "user_message",
        QuotaTrigger::SessionEnter => "session_enter",
    }
}

fn trigger_from_str(s: &str) -> Option<QuotaTrigger> {
    match s {
        "user_message" => Some(QuotaTrigger::UserMessage),
        "session_enter" => Some(QuotaTrigger::SessionEnter),
        _ => None,
    }
}

/// Writes a user's window (or its absence).
pub fn save(
    tx: &Transaction<'_>,
    app: &str,
    openid: &str,
    window: Option<&Window>,
) -> Result<(), StoreError> {
    match window {
        Some(w) => tx
            .prepare_cached(
                "INSERT INTO quota (app, openid, trigger, lim, used, until) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (app, openid) DO UPDATE SET trigger = excluded.trigger, \
                 lim = excluded.lim, used = excluded.used, until = excluded.until",
            )
            .and_then(|mut s| {
                s.execute(params![
                    app,
                    openid,
                    trigger_str(w.trigger),
                    w.limit,
                    w.used,
                    w.until
                ])
            })
            .map(drop)
            .map_err(backend),
        None => tx
            .prepare_cached("DELETE FROM quota WHERE app = ?1 AND openid = ?2")
            .and_then(|mut s| s.execute(params![app, openid]))
            .map(drop)
            .map_err(backend),
    }
}

/// The stored window of a user (tests and operators).
pub fn stored(conn: &Connection, app: &str, openid: &str) -> Result<Option<Window>, StoreError> {
    conn.query_row(
        "SELECT trigger, lim, used, until FROM quota WHERE app = ?1 AND openid = ?2",
        params![app, openid],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, i64>(3)?,
            ))
        },
    )
    .optional()
    .map_err(backend)
    .map(|row| {
        row.and_then(|(t, limit, used, until)| {
            trigger_from_str(&t).map(|trigger| Window {
                trigger,
                limit,
                used,
                until,
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> QuotaSettings {
        QuotaSettings::default()
    }

    #[test]
    fn user_message_admits_five_within_48h() {
        let a = admit(None, Some(QuotaTrigger::UserMessage), 1000, 7, &settings());
        assert_eq!(a.admitted, 5);
        assert!(a.reason.as_deref().unwrap().contains("5 messages"));
        let w = a.window.unwrap();
        assert_eq!((w.used, w.limit, w.until), (5, 5, 1000 + 48 * 3600));
    }

    #[test]
    fn session_enter_admits_two_within_a_minute() {
        let a = admit(None, Some(QuotaTrigger::SessionEnter), 1000, 3, &settings());
        assert_eq!(a.admitted, 2);
        assert!(a.reason.unwrap().contains("entering the chat"));
        let w = a.window.unwrap();
        // Still open at 1059, closed at 1060.
        assert_eq!(admit(Some(w), None, 1059, 1, &settings()).admitted, 0);
        let fresh = Window { used: 0, ..w };
        assert_eq!(admit(Some(fresh), None, 1059, 1, &settings()).admitted, 1);
        assert_eq!(admit(Some(fresh), None, 1060, 1, &settings()).admitted, 0);
    }

    #[test]
    fn allowance_is_shared_by_later_pushes_without_trigger() {
        let a = admit(None, Some(QuotaTrigger::UserMessage), 0, 3, &settings());
        let b = admit(a.window, None, 10, 3, &settings());
        assert_eq!(b.admitted, 2);
        assert!(b.reason.is_some());
    }

    #[test]
    fn a_trigger_resets_rather_than_accumulates() {
        let s = settings();
        // Three used out of five; a new message resets to five, not 2 + 5.
        let a = admit(None, Some(QuotaTrigger::UserMessage), 0, 3, &s);
        let b = admit(a.window, Some(QuotaTrigger::UserMessage), 100, 9, &s);
        assert_eq!(b.admitted, 5);
        // Entering the chat resets to that trigger's maximum and window (2 within 1 min),
        // even though the message window had allowance left.
        let c = admit(None, Some(QuotaTrigger::UserMessage), 0, 1, &s);
        let d = admit(c.window, Some(QuotaTrigger::SessionEnter), 10, 5, &s);
        assert_eq!(d.admitted, 2);
        assert_eq!(d.window.unwrap().until, 70);
    }

    #[test]
    fn no_window_drops_everything_with_a_reason() {
        let a = admit(None, None, 0, 2, &settings());
        assert_eq!(a.admitted, 0);
        assert!(a.reason.unwrap().contains("no send window"));
        let none = admit(None, None, 0, 0, &settings());
        assert_eq!(none.reason, None);
    }

    #[test]
    fn numbers_come_from_settings() {
        let s = QuotaSettings {
            per_user_message: 1,
            user_message_window_secs: 10,
            per_session_enter: 0,
            session_enter_window_secs: 10,
        };
        assert_eq!(
            admit(None, Some(QuotaTrigger::UserMessage), 0, 3, &s).admitted,
            1
        );
        assert_eq!(
            admit(None, Some(QuotaTrigger::SessionEnter), 0, 3, &s).admitted,
            0
        );
    }
}
