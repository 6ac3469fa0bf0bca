//! One app's access token: cached, fetched once however many sends wait on it, and expired by
//! compare-and-swap so that one refused token causes one refresh.
//!
//! This file owns the caching policy only; the HTTP call to `stable_token` is passed in as a
//! closure by [`super::client`], so the policy is tested here without a network.
//!
//! - **Lifetime.** A token is used until `refresh_margin` (5 min) before it expires; WeChat's
//!   normal mode hands out the next token during those last 5 minutes (protocol doc §7.2). If
//!   `expires_in` is not above the margin, the token is used for half its life.
//! - **Single flight.** Fetches run under an async mutex. A caller that queued behind a fetch
//!   takes its result, success or error, instead of fetching again, so 50 sends waiting on a
//!   failing token API cause one request, not 50 in a row.
//! - **Compare-and-expire.** `TokenSlot::invalidate_if` forgets the cached token only if it is
//!   still the one that was refused; 50 concurrent sends refused with the same token cause one
//!   refresh, and a late refusal of an old token never throws away a newer one.
//! - **Stale on error.** If a refresh fails transiently while the old token has not yet expired
//!   (the last 5 minutes), the old token keeps being used.
//! - **`force_refresh`.** Never in a loop. Normal mode is always used, except for the first fetch
//!   after a *refreshed* token was refused again (`Invalidate::Escalate`), and then only if the
//!   last forced fetch of this app is at least `force_refresh_min_interval` (default 2 h) ago.
//!   WeChat allows 20 forced fetches a day, 30 s apart, and each one invalidates the token of
//!   every other instance; 2 h keeps a misbehaving deployment to 12 a day.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::SendOutcome;
use super::clock::Clock;

/// An access token. Its `Debug` never shows the value, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AccessToken(Arc<str>);

impl AccessToken {
    pub(crate) fn new(value: &str) -> Self {
        Self(Arc::from(value))
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// How `stable_token` is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FetchMode {
    /// `force_refresh: false`: the current token, the same for every caller.
    Normal,
    /// `force_refresh: true`: a new token, invalidating the old one everywhere. Rate-limited.
    Force,
}

/// A token as `stable_token` returned it.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    /// The token.
    pub(crate) token: AccessToken,
    /// `expires_in`, from the moment it was asked for.
    pub(crate) expires_in: Duration,
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// Network error, timeout, HTTP 5xx, errcode -1 or 45011: the send is retried later.
    Transient(String),
    /// The app's appid, secret or IP allow-list is wrong: an operator must act.
    Config { errcode: i64, reason: String },
    /// Any other refusal.
    Failed { errcode: i64, reason: String },
}

impl TokenError {
    /// The outcome of a send that could not get a token.
    pub(crate) fn into_outcome(self) -> SendOutcome {
        match self {
            Self::Transient(reason) => SendOutcome::Retry {
                reason: format!("no access token: {reason}"),
            },
            Self::Config { errcode, reason } => SendOutcome::Failed {
                errcode,
                reason: format!(
                    "access token refused, check the app's appid, secret and IP allow-list: {reason}"
                ),
            },
            Self::Failed { errcode, reason } => SendOutcome::Failed {
                errcode,
                reason: format!("access token refused: {reason}"),
            },
        }
    }
}

/// What `TokenSlot::invalidate_if` should do besides forgetting the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalidate {
    /// Fetch a new one in normal mode.
    Refresh,
    /// A token fetched to replace a refused one was refused too: the next fetch may force.
    Escalate,
}

/// Timing knobs of a [`TokenSlot`].
#[derive(Debug, Clone)]
pub(crate) struct TokenPolicy {
    /// How long before `expires_in` runs out a token is replaced.
    pub(crate) refresh_margin: Duration,
    /// The least time between two `force_refresh: true` fetches of one app.
    pub(crate) force_refresh_min_interval: Duration,
}

/// The cached token of one app.
pub(crate) struct TokenSlot {
    /// The kefu app id, for logs.
    app_id: String,
    /// Lifetime and force policy.
    policy: TokenPolicy,
    /// Decides when a token is stale.
    clock: Clock,
    /// Cache and bookkeeping; held briefly, never across an `.await`.
    state: Mutex<SlotState>,
    /// Held across a fetch: the single flight.
    fetch_lock: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct SlotState {
    /// The last token fetched, until invalidated or replaced.
    cached: Option<Cached>,
    /// Fetches completed (success or error); tells a waiter whether a fetch ran while it waited.
    completed: u64,
    /// The error of the last completed fetch, shared with those who waited on it.
    last_error: Option<TokenError>,
    /// Set by [`Invalidate::Escalate`]: the next fetch may use force mode.
    force_next: bool,
    /// When force mode was last used.
    last_force: Option<Instant>,
}

struct Cached {
    /// The token.
    token: AccessToken,
    /// From here on it is replaced (expiry minus the margin).
    refresh_at: Instant,
    /// From here on WeChat refuses it.
    expires_at: Instant,
}

impl SlotState {
    fn fresh(&self, now: Instant) -> Option<AccessToken> {
        self.cached
            .as_ref()
            .filter(|c| now < c.refresh_at)
            .map(|c| c.token.clone())
    }

    /// A transient failure may still be served by a token that has not yet expired.
    fn settle_error(&self, error: TokenError, now: Instant) -> Result<AccessToken, TokenError> {
        match (&error, &self.cached) {
            (TokenError::Transient(_), Some(c)) if now < c.expires_at => Ok(c.token.clone()),
            _ => Err(error),
        }
    }
}

impl TokenSlot {
    pub(crate) fn new(app_id: &str, policy: TokenPolicy, clock: Clock) -> Self {
        Self {
            app_id: app_id.to_string(),
            policy,
            clock,
            state: Mutex::new(SlotState::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached token, or a new one from `fetch`, which is called at most once at a time.
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<AccessToken, TokenError>
    where
        F: FnOnce(FetchMode) -> Fut,
        Fut: Future<Output = Result<Fetched, TokenError>>,
    {
        let seen = {
            let state = self.state();
            if let Some(token) = state.fresh(self.clock.now()) {
                return Ok(token);
            }
            state.completed
        };
        let _flight = self.fetch_lock.lock().await;
        let (mode, started) = {
            let mut state = self.state();
            let now = self.clock.now();
            if let Some(token) = state.fresh(now) {
                return Ok(token);
            }
            if state.completed != seen
                && let Some(error) = state.last_error.clone()
            {
                // A fetch failed while we waited: share its verdict rather than ask again.
                return state.settle_error(error, now);
            }
            let may_force = state.last_force.is_none_or(|at| {
                now.saturating_duration_since(at) >= self.policy.force_refresh_min_interval
            });
            let mode = if state.force_next && may_force {
                state.last_force = Some(now);
                FetchMode::Force
            } else {
                FetchMode::Normal
            };
            if state.force_next && !may_force {
                tracing::warn!(
                    app = %self.app_id,
                    "a refreshed access token was refused again, but force_refresh was used \
                     less than {:?} ago; fetching in normal mode",
                    self.policy.force_refresh_min_interval
                );
            }
            state.force_next = false;
            (mode, now)
        };

        let result = fetch(mode).await;

        let mut state = self.state();
        state.completed += 1;
        match result {
            Ok(fetched) => {
                let life = lifetime(fetched.expires_in, self.policy.refresh_margin);
                tracing::info!(
                    app = %self.app_id,
                    force_refresh = mode == FetchMode::Force,
                    expires_in = fetched.expires_in.as_secs(),
                    "access token fetched"
                );
                state.last_error = None;
                state.cached = Some(Cached {
                    token: fetched.token.clone(),
                    refresh_at: started + life,
                    expires_at: started + fetched.expires_in,
                });
                Ok(fetched.token)
            }
            Err(error) => {
                state.last_error = Some(error.clone());
                let settled = state.settle_error(error, self.clock.now());
                if settled.is_ok() {
                    tracing::warn!(
                        app = %self.app_id,
                        "access token refresh failed; using the current one until it expires"
                    );
                }
                settled
            }
        }
    }

    /// Forgets the cached token if it is still `refused`; returns whether it did. A refusal of
    /// a token that has already been replaced changes nothing.
    pub(crate) fn invalidate_if(&self, refused: &AccessToken, how: Invalidate) -> bool {
        let mut state = self.state();
        let current = state.cached.as_ref().is_some_and(|c| c.token == *refused);
        if current {
            state.cached = None;
            if how == Invalidate::Escalate {
                state.force_next = true;
            }
        }
        current
    }
}

/// How long a token is used: until `margin` before it expires, or half its life if it is
/// shorter than the margin.
fn lifetime(expires_in: Duration, margin: Duration) -> Duration {
    if expires_in > margin {
        expires_in - margin
    } else {
        expires_in / 2
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::clock::ManualClock;
    use super::*;

    fn slot(clock: &ManualClock) -> Arc<TokenSlot> {
        Arc::new(TokenSlot::new(
            "demo",
            TokenPolicy {
                refresh_margin: Duration::from_secs(300),
                force_refresh_min_interval: Duration::from_secs(7200),
            },
            Clock::Manual(clock.clone()),
        ))
    }

    /// A fake `stable_token`: numbered tokens, counts calls and records their modes.
    #[derive(Clone, Default)]
    struct FakeApi {
        calls: Arc<AtomicUsize>,
        modes: Arc<Mutex<Vec<FetchMode>>>,
    }

    impl FakeApi {
        async fn fetch(self, mode: FetchMode, expires_in: u64) -> Result<Fetched, TokenError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            self.modes.lock().unwrap().push(mode);
            tokio::task::yield_now().await;
            Ok(Fetched {
                token: AccessToken::new(&format!("tok-{n}")),
                expires_in: Duration::from_secs(expires_in),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    async fn get(slot: &TokenSlot, api: &FakeApi) -> String {
        let api = api.clone();
        slot.get(|mode| api.fetch(mode, 7200))
            .await
            .unwrap()
            .expose()
            .to_string()
    }

    #[test]
    fn lifetime_keeps_the_margin_or_halves_short_lives() {
        let m = Duration::from_secs(300);
        assert_eq!(
            lifetime(Duration::from_secs(7200), m),
            Duration::from_secs(6900)
        );
        assert_eq!(
            lifetime(Duration::from_secs(300), m),
            Duration::from_secs(150)
        );
        assert_eq!(lifetime(Duration::ZERO, m), Duration::ZERO);
    }

    #[test]
    fn debug_hides_the_token() {
        assert_eq!(
            format!("{:?}", AccessToken::new("secret")),
            "AccessToken(***)"
        );
    }

    #[tokio::test]
    async fn cached_until_margin_before_expiry() {
        let clock = ManualClock::new();
        let slot = slot(&clock);
        let api = FakeApi::default();
        assert_eq!(get(&slot, &api).await, "tok-1");
        clock.advance(Duration::from_secs(6899));
        assert_eq!(get(&slot, &api).await, "tok-1");
        clock.advance(Duration::from_secs(1));
        assert_eq!(get(&slot, &api).await, "tok-2");
        assert_eq!(api.calls(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_fetch() {
        let clock = ManualClock::new();
        let slot = slot(&clock);
        let api = FakeApi::default();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (slot, api) = (slot.clone(), api.clone());
            tasks.spawn(async move { get(&slot, &api).await });
        }
        while let Some(token) = tasks.join_next().await {
            assert_eq!(token.unwrap(), "tok-1");
        }
        assert_eq!(api.calls(), 1);
    }

    #[tokio::test]
    async fn waiters_share_a_failed_fetch_instead_of_repeating_it() {
        let clock = ManualClock::new();
        let slot = slot(&clock);
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let failing = {
            let (slot, calls) = (slot.clone(), calls.clone());
            tokio::spawn(async move {
                slot.get(|_| async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let _ = released.await;
                    Err(TokenError::Transient("HTTP 502".into()))
                })
                .await
            })
        };
        // Wait until the first fetch is in flight, then queue a second caller behind it.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let waiter = {
            let (slot, calls) = (slot.clone(), calls.clone());
            tokio::spawn(async move {
                slot.get(|_| async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(Fetched {
                        token: AccessToken::new("unexpected"),
                        expires_in: Duration::from_secs(7200),
                    })
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        assert!(failing.await.unwrap().is_err());
        assert_eq!(
            waiter.await.unwrap(),
            Err(TokenError::Transient("HTTP 502".into()))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn invalidation_compares_before_expiring() {
        let clock = ManualClock::new();
        let slot = slot(&clock);
        let api = FakeApi::default();
        let first = AccessToken::new(&get(&slot, &api).await);
        assert!(slot.invalidate_if(&first, Invalidate::Refresh));
        assert!(
            !slot.invalidate_if(&first, Invalidate::Refresh),
            "already gone"
        );
        assert_eq!(get(&slot, &api).await, "tok-2");
        assert!(
            !slot.invalidate_if(&first, Invalidate::Refresh),
            "a late refusal of tok-1 keeps tok-2"
        );
        assert_eq!(get(&slot, &api).await, "tok-2");
        assert_eq!(api.calls(), 2);
    }

    #[tokio::test]
    async fn force_mode_only_after_escalation_and_rate_limited() {
        let clock = ManualClock::new();
        let slot = slot(&clock);
        let api = FakeApi::default();
        let t1 = AccessToken::new(&get(&slot, &api).await);
        slot.invalidate_if(&t1, Invalidate::Refresh);
        let t2 = AccessToken::new(&get(&slot, &api).await);
        slot.invalidate_if(&t2, Invalidate::Escalate);
        let t3 = AccessToken::new(&get(&slot, &api).await);
        // Escalating again within the interval: normal mode.
        slot.invalidate_if(&t3, Invalidate::Escalate);
        let t4 = AccessToken::new(&get(&slot, &api).await);
        // After the interval, force is allowed again.
        clock.advance(Duration::from_secs(7200));
        let t5 = AccessToken::new(&get(&slot, &api).await);
        slot.invalidate_if(&t5, Invalidate::Escalate);
        get(&slot, &api).await;
        let _ = t4;
        use FetchMode::{Force, Normal};
        assert_eq!(
            *api.modes.lock().unwrap(),
            [Normal, Normal, Force, Normal, Normal, Force]
        );
    }

    #[tokio::test]
    async fn transient_failure_keeps_serving_an_unexpired_token() {
        let clock = ManualClock::new();
        let slot = slot(&clock);
        let api = FakeApi::default();
        assert_eq!(get(&slot, &api).await, "tok-1");
        clock.advance(Duration::from_secs(7000)); // past refresh_at, before expiry
        let transient = |_| async { Err(TokenError::Transient("timed out".into())) };
        assert_eq!(slot.get(transient).await.unwrap().expose(), "tok-1");
        let config = |_| async {
            Err(TokenError::Config {
                errcode: 40125,
                reason: "invalid appsecret".into(),
            })
        };
        assert!(matches!(
            slot.get(config).await,
            Err(TokenError::Config { errcode: 40125, .. })
        ));
        clock.advance(Duration::from_secs(200)); // now expired
        let transient = |_| async { Err(TokenError::Transient("timed out".into())) };
        assert!(slot.get(transient).await.is_err());
    }
}
