//! `GET /healthz`: liveness, the store's health and the state of the rules now serving; and
//! [`StoreHealth`], which the webhook and the store probe report to.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;

use super::State;
use crate::metrics::Metrics;
use crate::store::StoreError;

/// A store failure that has not recovered yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreFailure {
    /// The latest error.
    pub error: String,
    /// Unix seconds of the first failure since the store was last healthy.
    pub since: i64,
}

/// Whether the store works, as the request path and the probe last saw it. A failure is set by
/// any failed operation and cleared only by a successful probe (a write), so `/healthz` stays
/// 503 while writes fail even when memory-only reads still succeed.
pub struct StoreHealth {
    failing: Mutex<Option<StoreFailure>>,
    metrics: Metrics,
}

impl StoreHealth {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            failing: Mutex::new(None),
            metrics,
        }
    }

    /// Records a failed store operation (`op`: claim, session, commit, probe, read).
    /// [`StoreError::Closed`] is a shutdown, not a failure.
    pub fn failed(&self, op: &str, error: &StoreError) {
        if matches!(error, StoreError::Closed) {
            return;
        }
        self.metrics.store_error(op);
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        match failing.as_mut() {
            Some(f) => f.error = error.to_string(),
            None => {
                tracing::error!(op, error = %error, "store: failing; /healthz answers 503 until it recovers");
                *failing = Some(StoreFailure {
                    error: error.to_string(),
                    since: crate::clock::unix_now(),
                });
            }
        }
    }

    /// A probe wrote successfully: the store works again.
    pub fn recovered(&self) {
        let was = self
            .failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(f) = was {
            tracing::info!(
                failing_secs = crate::clock::unix_now() - f.since,
                "store: recovered"
            );
        }
    }

    /// The failure in force, if any.
    pub fn failure(&self) -> Option<StoreFailure> {
        self.failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub async fn healthz(state: web::Data<State>) -> HttpResponse {
    let status = state.rules.status();
    let failure = state.store_health.failure();
    let since = |f: &StoreFailure| {
        chrono::DateTime::from_timestamp(f.since, 0)
            .map(|t| t.with_timezone(&state.settings.tz).to_rfc3339())
    };
    let shared = state.settings.shared_store();
    let store = match &failure {
        None => json!({"ok": true}),
        // A shared store (Redis) that cannot be reached: `store: down` (SPEC §8), its error
        // and since beside it.
        Some(_) if shared => json!("down"),
        // The embedded store failing (a full disk, SPEC §11): what failed, and since when.
        Some(f) => json!({"ok": false, "error": f.error, "since": since(f)}),
    };
    let mut body = json!({
        "status": if failure.is_none() { "ok" } else { "error" },
        "store": store,
        "rules": {
            "version": status.version,
            "rules": status.rules,
            "faq": status.faq,
            "loaded_at": status.loaded_at,
            "last_error": last_error(&state, status.last_error),
        },
        "apps": apps(&state),
    });
    if let (Some(f), true, Some(map)) = (&failure, shared, body.as_object_mut()) {
        map.insert("store_error".into(), json!(f.error));
        map.insert("store_since".into(), json!(since(f)));
    }
    if failure.is_none() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Each app by id: its kind and whether it runs in dry-run (replies recorded, never sent), so
/// that a dry-run deployment is never silent.
fn apps(state: &State) -> serde_json::Value {
    let mut apps: Vec<_> = state.apps.values().collect();
    apps.sort_by(|a, b| a.config.id.cmp(&b.config.id));
    let map: serde_json::Map<String, serde_json::Value> = apps
        .into_iter()
        .map(|app| {
            let c = &app.config;
            (
                c.id.clone(),
                json!({
                    "kind": c.kind,
                    "dry_run": c.effective_dry_run(),
                }),
            )
        })
        .collect();
    serde_json::Value::Object(map)
}

/// Why the last reload of any rules folder was refused: the global folder's error, then those of
/// the apps' own folders (each diagnostic names its file, relative to its rules folder: the
/// endpoint is public and the server's layout is nobody's business). Version and counts are the
/// global folder's, but an operator must see every refused edit in one place.
fn last_error(state: &State, global: Option<String>) -> Option<String> {
    let mut errors: Vec<String> = global
        .map(|e| relative_paths(&e, state.rules.dir()))
        .into_iter()
        .collect();
    let mut apps: Vec<_> = state.apps.values().collect();
    apps.sort_by(|a, b| a.config.id.cmp(&b.config.id));
    let mut seen = vec![Arc::as_ptr(&state.rules)];
    for app in apps {
        let handle = Arc::as_ptr(&app.rules);
        if seen.contains(&handle) {
            continue;
        }
        seen.push(handle);
        if let Some(error) = app.rules.status().last_error {
            errors.push(relative_paths(&error, app.rules.dir()));
        }
    }
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// `error` with every occurrence of the rules folder's path (and a trailing separator) removed.
fn relative_paths(error: &str, dir: &Path) -> String {
    let dir = dir.to_string_lossy();
    let with_sep = format!("{}/", dir.trim_end_matches('/'));
    error.replace(&with_sep, "").replace(dir.as_ref(), ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_errors_become_relative_to_the_rules_folder() {
        let dir = Path::new("/srv/kefu/rules");
        assert_eq!(
            relative_paths(
                "/srv/kefu/rules/shop/a.yaml:3:5: bad; /srv/kefu/rules: gone",
                dir
            ),
            "shop/a.yaml:3:5: bad; .: gone"
        );
    }

    #[test]
    fn a_failure_lasts_until_a_probe_succeeds() {
        let health = StoreHealth::new(Metrics::default());
        assert_eq!(health.failure(), None);
        health.failed("commit", &StoreError::Closed);
        assert_eq!(health.failure(), None, "a shutdown is not a failure");
        health.failed("commit", &StoreError::backend("disk full"));
        let since = health.failure().map(|f| f.since);
        health.failed("probe", &StoreError::backend("still full"));
        let f = health.failure();
        assert_eq!(
            f.as_ref().map(|f| f.error.as_str()),
            Some("store: still full")
        );
        assert_eq!(f.map(|f| f.since), since, "since is the first failure");
        health.recovered();
        assert_eq!(health.failure(), None);
    }
}
