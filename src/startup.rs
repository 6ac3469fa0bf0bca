//! Start-up in one place: [`Application::build`] loads the rules, opens the store, builds the
//! shared state and binds both listeners; [`Application::run`] spawns the background tasks
//! (listeners, outbox worker, rules watchers, store probe), supervises them, and takes shutdown
//! and reload as inputs (mini-redis' `server::run(listener, shutdown)`), so an in-process test
//! installs no signal handler. [`Application::run_until_stopped`] feeds it the process's signals
//! (SIGTERM/SIGINT: graceful stop; SIGHUP: reload). Tests bind port 0 and read the ports back.

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::{Context as _, bail};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::{AppConfig, Settings};
use crate::delivery::prepare::{PrepareOptions, Preparing};
use crate::delivery::{ResendHook, WorkerOptions, spawn_outbox_worker};
use crate::fetch::Fetcher;
use crate::http::health::StoreHealth;
use crate::http::{self, AppRuntime, State};
use crate::metrics::AppOutcomeLabels;
use crate::metrics::Metrics;
use crate::rules::LoadOptions;
use crate::rules::RuleSet;
use crate::rules::fetch::EnvLookup;
use crate::rules::reload::{ReloadOutcome, RulesHandle, spawn_watcher};
use crate::store::redis::StaleFenceHook;
use crate::store::redis::ops::RedisReader;
use crate::store::{
    MediaCache, Operations, Outbox, RecordedHook, RedisOptions, RedisStore, SharedValues,
    SqliteReader, SqliteStore, Store, StoreOptions,
};
use crate::wechat::{
    ClientApp, ClientOptions, MeteredDeliver, TokenFetchHook, TokenShare, WechatClient,
};
use futures_util::future::BoxFuture;

/// A built, bound, not yet running kefu.
pub struct Application {
    port: u16,
    /// 0 when the admin listener is off.
    admin_port: u16,
    server: Server,
    /// `None` when `admin_listen` is empty or could not be bound.
    admin: Option<Server>,
    state: web::Data<State>,
    /// One handle per distinct rules folder; a reload reloads them all.
    rule_handles: HashMap<PathBuf, Arc<RulesHandle>>,
    /// The store, closed last on shutdown.
    store: Backend,
    /// What the outbox worker sends through: image files and fetch replies prepared, then
    /// the API client.
    deliver: Arc<Preparing>,
    /// The outbox worker's pacing and hooks.
    worker_options: WorkerOptions,
}

/// The configured store (`store:` in kefu.yaml).
#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Redis(RedisStore),
}

impl Backend {
    /// Opens the store `settings` name; a Redis that would lose acknowledged state refuses.
    async fn open(settings: &Settings, metrics: &Metrics) -> anyhow::Result<Self> {
        if !settings.shared_store() {
            let sqlite = SqliteStore::open(&settings.data_dir, store_options(settings, metrics))
                .with_context(|| format!("opening the store in {}", settings.data_dir.display()))?;
            return Ok(Self::Sqlite(sqlite));
        }
        let redis = RedisStore::open(redis_options(settings, metrics))
            .await
            .context("opening the Redis store")?;
        let moved = redis
            .move_sqlite_outbox(&settings.data_dir)
            .await
            .context("moving the local SQLite outbox into Redis")?;
        if moved > 0 {
            tracing::warn!(
                moved,
                "moved the unsent replies of the local SQLite outbox into Redis"
            );
        }
        tracing::info!(
            instance = redis.instance(),
            "store: Redis, shared with the other instances"
        );
        Ok(Self::Redis(redis))
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(s) => Arc::new(s.clone()),
            Self::Redis(r) => Arc::new(r.clone()),
        }
    }

    fn ops(&self) -> Arc<dyn Operations> {
        match self {
            Self::Sqlite(s) => Arc::new(s.clone()),
            Self::Redis(r) => Arc::new(r.clone()),
        }
    }

    fn outbox(&self) -> Arc<dyn Outbox> {
        match self {
            Self::Sqlite(s) => Arc::new(s.clone()),
            Self::Redis(r) => Arc::new(r.clone()),
        }
    }

    /// The fleet's token, when the store is shared.
    fn token_share(&self) -> Option<Arc<dyn TokenShare>> {
        match self {
            Self::Sqlite(_) => None,
            Self::Redis(r) => Some(Arc::new(StoreTokenShare(Arc::new(r.clone())))),
        }
    }

    fn media(&self) -> Arc<dyn MediaCache> {
        match self {
            Self::Sqlite(s) => Arc::new(s.clone()),
            Self::Redis(r) => Arc::new(r.clone()),
        }
    }

    fn close(&self) {
        if let Self::Sqlite(s) = self {
            s.close();
        }
    }
}

/// The fleet's token (`wechat`'s [`TokenShare`]) kept in the store's shared values: the one
/// place that knows both.
struct StoreTokenShare(Arc<dyn SharedValues>);

const TOKEN: &str = "access_token";
const TOKEN_LOCK: &str = "access_token_lock";

fn reason(e: crate::store::StoreError) -> String {
    e.to_string()
}

impl TokenShare for StoreTokenShare {
    fn get(&self, app: &str) -> BoxFuture<'_, Result<Option<(String, i64)>, String>> {
        let app = app.to_string();
        Box::pin(async move { self.0.get_value(&app, TOKEN).await.map_err(reason) })
    }
    fn put(&self, app: &str, token: &str, ttl_ms: i64) -> BoxFuture<'_, Result<(), String>> {
        let (app, token) = (app.to_string(), token.to_string());
        Box::pin(async move {
            self.0
                .put_value(&app, TOKEN, &token, ttl_ms, false)
                .await
                .map(drop)
                .map_err(reason)
        })
    }
    fn lock(&self, app: &str, holder: &str, ttl_ms: i64) -> BoxFuture<'_, Result<bool, String>> {
        let (app, holder) = (app.to_string(), holder.to_string());
        Box::pin(async move {
            self.0
                .put_value(&app, TOKEN_LOCK, &holder, ttl_ms, true)
                .await
                .map_err(reason)
        })
    }
    fn unlock(&self, app: &str, holder: &str) -> BoxFuture<'_, Result<(), String>> {
        let (app, holder) = (app.to_string(), holder.to_string());
        Box::pin(async move {
            self.0
                .delete_value_if(&app, TOKEN_LOCK, &holder)
                .await
                .map(drop)
                .map_err(reason)
        })
    }
    fn expire_if(&self, app: &str, token: &str) -> BoxFuture<'_, Result<bool, String>> {
        let (app, token) = (app.to_string(), token.to_string());
        Box::pin(async move {
            self.0
                .delete_value_if(&app, TOKEN, &token)
                .await
                .map_err(reason)
        })
    }
}

/// The Redis store's options from `kefu.yaml`.
fn redis_options(settings: &Settings, metrics: &Metrics) -> RedisOptions {
    let stale = metrics.stale_fences.clone();
    let metrics = metrics.clone();
    RedisOptions {
        prefix: settings.redis_prefix.clone(),
        quota: settings.quota.clone(),
        lease_ms: i64::try_from(settings.outbox.lease_ms).unwrap_or(i64::MAX),
        log_retention_days: settings.log_retention_days,
        on_recorded: Some(RecordedHook(Arc::new(move |records| {
            metrics.count_recorded(records);
        }))),
        on_stale_fence: Some(StaleFenceHook(Arc::new(move || {
            stale.inc();
        }))),
        ..RedisOptions::new(
            &settings.store,
            settings.apps.iter().map(|a| a.id.clone()).collect(),
        )
    }
}

/// Wraps the store the request path and the probe use, e.g. to inject failures behind the
/// [`Store`] interface in tests.
pub type StoreLayer = Box<dyn FnOnce(Arc<dyn Store>) -> Arc<dyn Store> + Send>;

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_store_layer(settings, Box::new(|store| store)).await
    }

    /// [`Self::build`], with the store seen through `layer`.
    pub async fn build_with_store_layer(
        settings: Settings,
        layer: StoreLayer,
    ) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let metrics = Metrics::default();
        let rule_handles = load_rules(&settings, &metrics)?;
        let global = rule_handles
            .get(&settings.rules_dir)
            .cloned()
            .context("the global rules folder was not loaded")?;
        let apps = app_runtimes(&settings, &rule_handles, &global);

        let backend = Backend::open(&settings, &metrics).await?;
        let client = api_client(&settings, &metrics, backend.token_share())?;
        let fetcher = Fetcher::new(std_env(), Some(metrics.clone()))
            .context("building the HTTP client of fetch rules")?;
        let store: Arc<dyn Store> = layer(backend.store());
        let state = web::Data::new(State {
            settings: settings.clone(),
            apps,
            rules: global,
            store,
            ops: backend.ops(),
            client: client.clone(),
            metrics: metrics.clone(),
            store_health: Arc::new(StoreHealth::new(metrics.clone())),
            fetcher: fetcher.clone(),
        });

        let (server, port) = public_server(&settings, state.clone())?;
        let (admin, admin_port) = admin_server(&settings, state.clone())?;
        tracing::info!(
            listen = %settings.listen,
            port,
            admin_port,
            apps = settings.apps.len(),
            "kefu is listening"
        );
        let resent = metrics.resent_after_restart.clone();
        let worker_options = WorkerOptions {
            on_resend: Some(ResendHook(Arc::new(move |_| {
                resent.inc();
            }))),
            ..worker_options(&settings.outbox)
        };
        Ok(Self {
            port,
            admin_port,
            server,
            admin,
            state,
            rule_handles,
            store: backend.clone(),
            deliver: Arc::new(Preparing::new(
                Arc::new(MeteredDeliver::new(client.clone(), metrics.clone())),
                backend.media(),
                Arc::new(client),
                fetcher,
                PrepareOptions {
                    reupload_after: std::time::Duration::from_secs(
                        settings.media.reupload_after_secs,
                    ),
                },
                Some(metrics),
            )),
            worker_options,
        })
    }

    /// The port of the public listener (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the admin listener; 0 when it is off.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The shared state (tests inspect the store through it).
    pub fn state(&self) -> web::Data<State> {
        self.state.clone()
    }

    /// Runs until SIGTERM or SIGINT (or until a server stops on its own), reloading the rules on
    /// SIGHUP: [`Self::run`] with the process's signals as its inputs.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let (reload, reloads) = mpsc::channel(1);
        let shutdown = async move {
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM: stopping"); return; }
                    _ = int.recv() => { tracing::info!("SIGINT: stopping"); return; }
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: reloading rules");
                        // Full: a reload is already pending, and it will read this edit too.
                        let _ = reload.try_send(());
                    }
                }
            }
        };
        self.run(shutdown, reloads).await
    }

    /// Runs until `shutdown` resolves (or until a listener or the outbox worker stops on its own,
    /// which is logged with its reason), reloading every rules folder whenever `reload` yields.
    /// A stop finishes the requests in flight, lets sends in flight finish for a grace period and
    /// leaves unsent replies in the outbox for the next start.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
        mut reload: mpsc::Receiver<()>,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut stop = stop_rx.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        };
        let mut watchers = JoinSet::new();
        for handle in self.rule_handles.values() {
            match spawn_watcher(handle.clone(), stopped()) {
                Ok(task) => {
                    let dir = handle_dir(handle);
                    watchers.spawn(async move { (task.await, dir) });
                }
                Err(e) => {
                    tracing::warn!(dir = %handle.dir().display(), error = %e, "cannot watch the rules folder: reload with SIGHUP")
                }
            }
        }
        let mut worker = spawn_outbox_worker(
            self.store.outbox(),
            self.deliver.clone(),
            self.worker_options.clone(),
            stopped(),
        );
        let mut prober = tokio::spawn(probe_store(self.state.clone(), stopped()));
        let server_handle = self.server.handle();
        let admin_handle = self.admin.as_ref().map(Server::handle);
        let mut server = tokio::spawn(self.server);
        let mut admin = tokio::spawn(async move {
            match self.admin {
                Some(admin) => admin.await,
                // No admin listener: a future that never ends.
                None => std::future::pending().await,
            }
        });
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(()) = reload.recv() => {
                    for handle in self.rule_handles.values() {
                        let outcome = handle.reload_async().await;
                        tracing::info!(dir = %handle.dir().display(), outcome = outcome.label(), "reload");
                    }
                }
                Some(ended) = watchers.join_next() => {
                    // Not fatal: the rules keep serving and a reload signal still reloads them.
                    tracing::error!(watcher = ?ended, "a rules-folder watcher stopped: reload with SIGHUP");
                }
                r = &mut server => { tracing::error!(result = ?r, "public listener stopped"); break; }
                r = &mut admin => { tracing::error!(result = ?r, "admin listener stopped"); break; }
                r = &mut worker => { tracing::error!(result = ?r, "outbox worker stopped"); break; }
                r = &mut prober => { tracing::error!(result = ?r, "store probe stopped"); break; }
            }
        }
        // Finish the requests in flight, then let the worker finish its sends in flight; what is
        // not sent stays in the outbox for the next start.
        server_handle.stop(true).await;
        if let Some(admin_handle) = admin_handle {
            admin_handle.stop(true).await;
        }
        let _ = stop_tx.send(true);
        if !worker.is_finished() {
            match worker.await {
                // The worker logs its own summary as it stops.
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "outbox worker failed"),
                Err(e) => tracing::error!(error = %e, "outbox worker task failed"),
            }
        }
        while watchers.join_next().await.is_some() {}
        let _ = prober.await;
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The process environment, for `${VAR}` in fetch rules.
pub fn std_env() -> EnvLookup {
    Arc::new(|name| std::env::var(name).ok())
}

/// What rules folders are loaded with, from kefu.yaml: `fetch_hosts`, the environment, and the
/// image size limit of the strictest account kind configured.
pub fn rule_load_options(settings: &Settings) -> LoadOptions {
    use crate::config::AppKind;
    use crate::rules::files::{MAX_IMAGE_BYTES_MINIPROGRAM, MAX_IMAGE_BYTES_OFFICIAL_ACCOUNT};
    let max_image_bytes = settings
        .apps
        .iter()
        .map(|a| match a.kind {
            AppKind::OfficialAccount => MAX_IMAGE_BYTES_OFFICIAL_ACCOUNT,
            _ => MAX_IMAGE_BYTES_MINIPROGRAM,
        })
        .min()
        .unwrap_or(MAX_IMAGE_BYTES_MINIPROGRAM);
    LoadOptions {
        fetch_hosts: Vec::new(),
        env: std_env(),
        max_image_bytes,
    }
    .with_fetch_hosts(&settings.fetch_hosts)
}

/// Loads every distinct rules folder once; a folder with broken rules refuses the start.
fn load_rules(
    settings: &Settings,
    metrics: &Metrics,
) -> anyhow::Result<HashMap<PathBuf, Arc<RulesHandle>>> {
    let mut handles = HashMap::new();
    for dir in settings.all_rules_dirs() {
        let loaded = if dir.exists() {
            RulesHandle::load_with(
                dir.clone(),
                settings.faq.clone(),
                rule_load_options(settings),
            )
        } else {
            // No folder yet: serve with no rules (every push is answered `success`) and pick
            // the folder up when it is created; a folder with broken rules still refuses.
            tracing::warn!(dir = %dir.display(), "the rules folder does not exist: serving without rules until it is created");
            Ok((
                RulesHandle::with_set(dir.clone(), settings.faq.clone(), RuleSet::default())
                    .with_options(rule_load_options(settings)),
                Vec::new(),
            ))
        };
        let (handle, warnings) = match loaded {
            Ok(loaded) => loaded,
            Err(diagnostics) => {
                for d in &diagnostics {
                    tracing::error!("{d}");
                }
                bail!(
                    "the rules in {} have {} problem(s) (run `kefu check`)",
                    dir.display(),
                    diagnostics.iter().filter(|d| d.is_error()).count()
                );
            }
        };
        for d in &warnings {
            tracing::warn!("{d}");
        }
        let reload_metrics = metrics.clone();
        let handle = Arc::new(
            handle.with_reload_hook(Box::new(move |outcome: &ReloadOutcome| {
                reload_metrics.reload_outcome(outcome.label());
            })),
        );
        handles.insert(dir, handle);
    }
    Ok(handles)
}

/// Each configured app with the rules of its folder; dry-run apps are announced.
fn app_runtimes(
    settings: &Settings,
    handles: &HashMap<PathBuf, Arc<RulesHandle>>,
    global: &Arc<RulesHandle>,
) -> HashMap<String, Arc<AppRuntime>> {
    let mut apps = HashMap::new();
    for app in &settings.apps {
        let dir = settings.rules_dir_of(app).to_path_buf();
        let rules = handles.get(&dir).cloned().unwrap_or_else(|| global.clone());
        if app.effective_dry_run() {
            tracing::warn!(
                app = app.id.as_str(),
                reason = if app.secret.is_empty() {
                    "no secret"
                } else {
                    "dry_run: true"
                },
                "app runs in DRY-RUN: replies are recorded and logged, never sent to users"
            );
        }
        apps.insert(
            app.id.clone(),
            Arc::new(AppRuntime {
                config: app.clone(),
                rules,
            }),
        );
    }
    apps
}

/// The WeChat API client, counting token fetches.
fn api_client(
    settings: &Settings,
    metrics: &Metrics,
    token_share: Option<Arc<dyn TokenShare>>,
) -> anyhow::Result<WechatClient> {
    let token_metrics = metrics.clone();
    let client_options = ClientOptions {
        request_timeout: Duration::from_millis(settings.outbox.request_timeout_ms),
        on_token_fetch: Some(TokenFetchHook(Arc::new(move |app: &str, ok: bool| {
            token_metrics
                .token_fetches
                .get_or_create(&AppOutcomeLabels {
                    app: app.to_string(),
                    outcome: if ok { "ok" } else { "error" }.to_string(),
                })
                .inc();
        }))),
        token_share,
        ..ClientOptions::default()
    };
    WechatClient::new(&settings.api_base, &settings.apps, client_options)
        .context("building the WeChat API client")
}

/// The push listener, bound: the server and its port.
fn public_server(settings: &Settings, state: web::Data<State>) -> anyhow::Result<(Server, u16)> {
    let listener = TcpListener::bind(&settings.listen)
        .with_context(|| format!("binding listen address {}", settings.listen))?;
    let port = listener.local_addr()?.port();
    // actix counts connections per worker thread.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(http::public_routes)
    })
    .workers(workers)
    .max_connections(settings.max_connections.div_ceil(workers))
    // Headers within the request timeout; the webhook bounds the body by the same deadline.
    .client_request_timeout(Duration::from_secs(settings.request_timeout_secs))
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok((server, port))
}

/// The admin listener, when configured and bindable: an operator's convenience, so a taken
/// address (or `""`) leaves WeChat's endpoint serving, and the error says what is off.
fn admin_server(
    settings: &Settings,
    state: web::Data<State>,
) -> anyhow::Result<(Option<Server>, u16)> {
    let listener = match settings.admin_listen.trim() {
        "" => return Ok((None, 0)),
        addr => match TcpListener::bind(addr) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(admin_listen = addr, error = %e, "cannot bind admin_listen: /metrics and the console are off");
                return Ok((None, 0));
            }
        },
    };
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(http::admin_routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(2)
    .listen(listener)?
    .run();
    Ok((Some(server), port))
}

/// A watched folder, for the log line of a watcher that ended.
fn handle_dir(handle: &RulesHandle) -> String {
    handle.dir().display().to_string()
}

/// The operators' read side of the configured store, for commands that run beside a daemon
/// (`kefu stats`): it reads, never writes.
pub fn operations(settings: &Settings) -> anyhow::Result<Box<dyn Operations>> {
    if settings.shared_store() {
        let reader = RedisReader::open(RedisOptions {
            prefix: settings.redis_prefix.clone(),
            ..RedisOptions::new(
                &settings.store,
                settings.apps.iter().map(|a| a.id.clone()).collect(),
            )
        })?;
        return Ok(Box::new(reader));
    }
    let reader = SqliteReader::open(&settings.data_dir)?;
    Ok(Box::new(reader))
}

/// The outbox worker's options: the defaults with the pacing and bounds of `outbox:`.
fn worker_options(o: &crate::config::OutboxSettings) -> WorkerOptions {
    WorkerOptions {
        concurrency: o.concurrency,
        backoff_base: Duration::from_millis(o.backoff_base_ms),
        backoff_max: Duration::from_millis(o.backoff_max_ms),
        give_up_after: Duration::from_secs(o.give_up_after_secs),
        max_attempts: o.max_attempts,
        send_timeout: Duration::from_millis(o.send_timeout_ms),
        ..WorkerOptions::default()
    }
}

/// The store's options from `kefu.yaml`.
fn store_options(settings: &Settings, metrics: &Metrics) -> StoreOptions {
    let metrics = metrics.clone();
    StoreOptions {
        log_retention_days: settings.log_retention_days,
        durability: settings.durability,
        on_recorded: Some(RecordedHook(Arc::new(move |records| {
            metrics.count_recorded(records);
        }))),
        ..StoreOptions::new(settings.quota.clone())
    }
}

/// How often the store is probed while it works, and while it fails.
const PROBE_EVERY: Duration = Duration::from_secs(5);
const PROBE_EVERY_WHILE_FAILING: Duration = Duration::from_secs(1);

/// Writes to the store every few seconds so that `/healthz` notices a failing store, and its
/// recovery, without waiting for traffic.
async fn probe_store(state: web::Data<State>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        let pause = if state.store_health.failure().is_some() {
            PROBE_EVERY_WHILE_FAILING
        } else {
            PROBE_EVERY
        };
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(pause) => {}
        }
        match tokio::time::timeout(PROBE_EVERY, state.store.probe()).await {
            Ok(Ok(())) => state.store_health.recovered(),
            Ok(Err(e)) => state.store_health.failed("probe", &e),
            Err(_) => state.store_health.failed(
                "probe",
                &crate::store::StoreError::backend("no answer within 5 s"),
            ),
        }
    }
}

/// The API client's view of an app of kefu.yaml.
impl From<&AppConfig> for ClientApp {
    fn from(app: &AppConfig) -> Self {
        ClientApp {
            id: app.id.clone(),
            appid: app.appid.clone(),
            secret: app.secret.clone(),
            dry_run: app.effective_dry_run(),
        }
    }
}
