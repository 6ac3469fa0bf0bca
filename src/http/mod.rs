//! The HTTP edge: the public listener (webhook, health) and the admin listener (metrics,
//! operator console). Handlers turn requests into calls on the state; they hold no logic of
//! their own beyond the refusal order of SPEC §3.

pub mod admin;
pub mod error;
pub mod health;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::web;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::rules::reload::RulesHandle;
use crate::store::{Operations, Store};
use crate::wechat::WechatClient;
pub use webhook::AppRuntime;

/// Everything a handler may use; shared by both listeners.
pub struct State {
    pub settings: Arc<Settings>,
    /// Configured apps by id.
    pub apps: HashMap<String, Arc<AppRuntime>>,
    /// The rules of the global `rules_dir` (what `/healthz` reports).
    pub rules: Arc<RulesHandle>,
    /// The request path's state, reached only through the trait (SPEC §8).
    pub store: Arc<dyn Store>,
    /// The operators' read side (outbox depth, failures, stats) for metrics and the console.
    pub ops: Arc<dyn Operations>,
    /// The API client (its dry-run record is shown on the console).
    pub client: WechatClient,
    pub metrics: Metrics,
    /// Whether the store works (`/healthz`, `kefu_store_errors_total`).
    pub store_health: Arc<health::StoreHealth>,
    /// Calls operators' backends for `fetch` rules (an Official Account's passive reply).
    pub fetcher: crate::fetch::Fetcher,
}

/// Routes of the public listener.
pub fn public_routes(cfg: &mut web::ServiceConfig) {
    // `/wechat` before `/wechat/{app}`: the router tries routes in order, and a static path is
    // matched without the segment captures a pattern allocates.
    cfg.service(web::resource("/wechat").route(web::route().to(webhook::single)))
        .service(web::resource("/wechat/{app}").route(web::route().to(webhook::with_app)))
        .route("/healthz", web::get().to(health::healthz));
}

/// Routes of the admin listener.
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(admin::metrics))
        .route("/healthz", web::get().to(health::healthz))
        .route("/", web::get().to(admin::console))
        .route("/api/try", web::post().to(admin::try_message))
        .route("/api/summary", web::get().to(admin::summary))
        .route("/api/conversations", web::get().to(admin::conversations))
        .route("/api/thread", web::get().to(admin::thread))
        .route("/api/session/end", web::post().to(admin::end_session));
}
