//! Hot reload: the [`RulesHandle`] that serves one compiled [`RuleSet`] and swaps in the next
//! whole, and the folder watcher that asks it to reload.
//!
//! A reload reads and compiles the whole folder off to the side; a valid set replaces the old one
//! atomically (`arc_swap`), an invalid one is refused whole and the old one keeps serving, with
//! the problems in [`RulesStatus::last_error`] until the next valid load. A request takes one
//! snapshot ([`RulesHandle::current`]) and uses it from start to end; no lock is held across an
//! `.await`. Owns: the serving set, the status shown by `/healthz`, the watcher task. Must not
//! depend on http, dispatch or metrics: the lead counts reloads through [`ReloadOutcome`] (returned
//! and passed to the optional hook).

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{SecondsFormat, Utc};
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::diag::Diagnostic;
use crate::faq::FaqSettings;

use super::LoadOptions;

use super::RuleSet;
use super::load::read_folder;

/// How long the folder must be quiet before a reload: an editor's save or a `cp -r` is several
/// events, and one reload should see them all.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// A folder that never goes quiet is still reloaded this often.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

/// How many diagnostics `last_error` shows.
const LAST_ERROR_ITEMS: usize = 3;

/// What `/healthz` shows of the rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulesStatus {
    /// 1 for the first good load, +1 for every swap.
    pub version: u64,
    /// Rules in the set now serving.
    pub rules: usize,
    /// FAQ entries in the set now serving.
    pub faq: usize,
    /// When the set now serving was loaded (RFC 3339, UTC).
    pub loaded_at: String,
    /// Why the last reload was refused; cleared by the next valid load.
    pub last_error: Option<String>,
}

/// What a reload did, for logs and the reloads-by-outcome metric.
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// A new set is serving.
    Swapped {
        version: u64,
        rules: usize,
        faq: usize,
        /// Printed, not refused.
        warnings: Vec<Diagnostic>,
    },
    /// The folder has errors: the old set keeps serving.
    Refused { diagnostics: Vec<Diagnostic> },
    /// The files are the ones already serving (a touch, a save without change, a revert).
    Unchanged,
}

impl ReloadOutcome {
    /// A metric label: `swapped`, `refused` or `unchanged`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Swapped { .. } => "swapped",
            Self::Refused { .. } => "refused",
            Self::Unchanged => "unchanged",
        }
    }
}

/// Called after every reload (watcher, SIGHUP or console), e.g. to count outcomes in metrics.
pub type ReloadHook = Box<dyn Fn(&ReloadOutcome) + Send + Sync>;

/// What reloads share: kept under one lock so that reloads run one at a time.
#[derive(Debug)]
struct State {
    /// What `/healthz` shows.
    status: RulesStatus,
    /// Hash of the files of the set now serving, to tell `Unchanged` from a real change.
    fingerprint: u64,
}

/// The rules of one folder, as served now, and how to reload them.
pub struct RulesHandle {
    /// The folder reloads read.
    dir: PathBuf,
    /// FAQ tuning passed to every build of the FAQ index.
    faq: FaqSettings,
    /// `fetch_hosts`, the environment and image limits every load checks against.
    options: LoadOptions,
    /// The set now serving; swapped whole.
    current: ArcSwap<RuleSet>,
    /// Status and fingerprint; the lock also serializes reloads.
    state: Mutex<State>,
    /// Called with every reload's outcome.
    hook: Option<ReloadHook>,
}

impl std::fmt::Debug for RulesHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesHandle")
            .field("dir", &self.dir)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A hash of what a load saw: every file's path and text, and the folder's own problems.
fn fingerprint(files: &[super::SourceFile], io_problems: &[Diagnostic]) -> u64 {
    let mut hasher = DefaultHasher::new();
    files.hash(&mut hasher);
    for d in io_problems {
        d.to_string().hash(&mut hasher);
    }
    hasher.finish()
}

/// The first few errors, one line.
fn summarize(diagnostics: &[Diagnostic]) -> String {
    let errors: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.is_error()).collect();
    let mut text = errors
        .iter()
        .take(LAST_ERROR_ITEMS)
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > LAST_ERROR_ITEMS {
        text.push_str(&format!(" (and {} more)", errors.len() - LAST_ERROR_ITEMS));
    }
    text
}

impl RulesHandle {
    /// The first load of `dir`. `Ok` with the warnings, or `Err` with every problem when the
    /// folder does not load (there is no old set to keep serving).
    pub fn load(
        dir: impl Into<PathBuf>,
        faq: FaqSettings,
    ) -> Result<(RulesHandle, Vec<Diagnostic>), Vec<Diagnostic>> {
        Self::load_with(dir, faq, LoadOptions::default())
    }

    /// [`RulesHandle::load`] with the settings of `kefu.yaml`, kept for every reload.
    pub fn load_with(
        dir: impl Into<PathBuf>,
        faq: FaqSettings,
        options: LoadOptions,
    ) -> Result<(RulesHandle, Vec<Diagnostic>), Vec<Diagnostic>> {
        let dir = dir.into();
        let (files, io_problems) = read_folder(&dir);
        let print = fingerprint(&files, &io_problems);
        let report = super::compile_files(&dir, &files, io_problems, &faq, &options);
        match report.set {
            Some(set) => {
                let handle = RulesHandle::with_set(dir, faq, set).with_options(options);
                handle.lock().fingerprint = print;
                Ok((handle, report.diagnostics))
            }
            None => Err(report.diagnostics),
        }
    }

    /// This handle, reloading with `options`.
    pub fn with_options(mut self, options: LoadOptions) -> Self {
        self.options = options;
        self
    }

    /// A handle serving `set` (version 1), e.g. one loaded by the caller; the first reload
    /// reads `dir`.
    pub fn with_set(dir: impl Into<PathBuf>, faq: FaqSettings, set: RuleSet) -> RulesHandle {
        let status = RulesStatus {
            version: 1,
            rules: set.rule_count(),
            faq: set.faq().len(),
            loaded_at: now_rfc3339(),
            last_error: None,
        };
        RulesHandle {
            dir: dir.into(),
            faq,
            options: LoadOptions::default(),
            current: ArcSwap::from_pointee(set),
            state: Mutex::new(State {
                status,
                fingerprint: 0,
            }),
            hook: None,
        }
    }

    /// Calls `hook` after every reload, with its outcome.
    pub fn with_reload_hook(mut self, hook: ReloadHook) -> RulesHandle {
        self.hook = Some(hook);
        self
    }

    /// The folder this handle reloads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The set now serving: one snapshot for a whole request.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current.load_full()
    }

    /// What `/healthz` shows.
    pub fn status(&self) -> RulesStatus {
        self.lock().status.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a status that is still consistent enough.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads and compiles the folder; swaps the new set in when valid. Blocking (file I/O and
    /// compilation): from async code use [`RulesHandle::reload_async`].
    pub fn reload(&self) -> ReloadOutcome {
        let started = std::time::Instant::now();
        let outcome = self.load_and_swap();
        self.report(&outcome, started.elapsed());
        outcome
    }

    /// [`RulesHandle::reload`] when the folder differs from what is serving; nothing is
    /// logged or counted when it does not. For the watcher's first look: a change made after
    /// the first load but before the watch was in place sent no event.
    pub fn reload_if_changed(&self) -> Option<ReloadOutcome> {
        let started = std::time::Instant::now();
        let outcome = self.load_and_swap();
        if matches!(outcome, ReloadOutcome::Unchanged) {
            return None;
        }
        self.report(&outcome, started.elapsed());
        Some(outcome)
    }

    /// Reads and compiles the folder and swaps a valid new set in, under the lock.
    fn load_and_swap(&self) -> ReloadOutcome {
        {
            let mut state = self.lock();
            let (files, io_problems) = read_folder(&self.dir);
            let print = fingerprint(&files, &io_problems);
            if print == state.fingerprint {
                state.status.last_error = None;
                ReloadOutcome::Unchanged
            } else {
                let report =
                    super::compile_files(&self.dir, &files, io_problems, &self.faq, &self.options);
                match report.set {
                    Some(set) => {
                        let status = &mut state.status;
                        status.version += 1;
                        status.rules = set.rule_count();
                        status.faq = set.faq().len();
                        status.loaded_at = now_rfc3339();
                        status.last_error = None;
                        self.current.store(Arc::new(set));
                        state.fingerprint = print;
                        ReloadOutcome::Swapped {
                            version: state.status.version,
                            rules: state.status.rules,
                            faq: state.status.faq,
                            warnings: report.diagnostics,
                        }
                    }
                    None => {
                        state.status.last_error = Some(summarize(&report.diagnostics));
                        ReloadOutcome::Refused {
                            diagnostics: report.diagnostics,
                        }
                    }
                }
            }
        }
    }

    /// Logs an outcome and passes it to the hook.
    fn report(&self, outcome: &ReloadOutcome, took: std::time::Duration) {
        self.log(outcome, took.as_millis() as u64);
        if let Some(hook) = &self.hook {
            hook(outcome);
        }
    }

    /// [`RulesHandle::reload`] on the blocking pool, for async callers (SIGHUP, the console).
    pub async fn reload_async(self: &Arc<Self>) -> ReloadOutcome {
        let handle = Arc::clone(self);
        match tokio::task::spawn_blocking(move || handle.reload()).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %e, "rules reload task failed");
                ReloadOutcome::Refused {
                    diagnostics: vec![Diagnostic::error(
                        crate::diag::Location::new(&self.dir, 1, 1),
                        format!("reload failed: {e}"),
                    )],
                }
            }
        }
    }

    fn log(&self, outcome: &ReloadOutcome, took_ms: u64) {
        let dir = self.dir.display().to_string();
        match outcome {
            ReloadOutcome::Swapped {
                version,
                rules,
                faq,
                warnings,
            } => {
                tracing::info!(%dir, version, rules, faq, warnings = warnings.len(), took_ms, "rules reloaded");
                for w in warnings {
                    tracing::warn!(%dir, "{w}");
                }
            }
            ReloadOutcome::Refused { diagnostics } => {
                tracing::error!(
                    %dir,
                    errors = diagnostics.iter().filter(|d| d.is_error()).count(),
                    "rules reload refused; the previous rules keep serving"
                );
                for d in diagnostics {
                    tracing::error!(%dir, "{d}");
                }
            }
            ReloadOutcome::Unchanged => tracing::debug!(%dir, "rules unchanged"),
        }
    }
}

/// Could this event change what the folder loads?
fn is_relevant(event: &notify::Result<Event>, dir: &Path) -> bool {
    let Ok(event) = event else {
        // The watcher lost track (queue overflow, …): a reload rescans everything.
        return true;
    };
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return false,
        _ => {}
    }
    // The parent folder is watched too (to see the rules folder itself replaced): ignore its
    // other entries.
    event.paths.is_empty() || event.paths.iter().any(|p| p.starts_with(dir))
}

/// The watches: the rules folder (recursive) and its parent (to see the folder replaced).
struct Watches {
    /// Absolute path of the rules folder.
    dir: PathBuf,
    /// The folder's identity when it was watched (`None`: not there or not watched).
    identity: Option<(u64, u64)>,
}

#[cfg(unix)]
fn identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(dir: &Path) -> Option<(u64, u64)> {
    // No inode to compare: watch anew after every change.
    std::fs::metadata(dir).ok().map(|_| (0, rand::random()))
}

impl Watches {
    fn new(watcher: &mut RecommendedWatcher, dir: PathBuf) -> notify::Result<Watches> {
        if let Some(parent) = dir.parent()
            && let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive)
        {
            tracing::warn!(error = %e, parent = %parent.display(),
                "cannot watch the rules folder's parent; replacing the folder itself will not be seen");
        }
        let mut watches = Watches {
            dir,
            identity: None,
        };
        watches.refresh(watcher)?;
        Ok(watches)
    }

    /// Watches the folder anew when it was replaced (or has appeared).
    fn refresh(&mut self, watcher: &mut RecommendedWatcher) -> notify::Result<()> {
        let now = identity(&self.dir);
        if now == self.identity {
            return Ok(());
        }
        if self.identity.is_some() {
            // The old watch may be gone with the old folder already.
            let _ = watcher.unwatch(&self.dir);
        }
        self.identity = None;
        if now.is_some() {
            watcher.watch(&self.dir, RecursiveMode::Recursive)?;
            self.identity = now;
        }
        Ok(())
    }
}

/// Watches the handle's folder and reloads after every burst of changes (create, write, rename,
/// delete, an editor's write-then-rename save, the folder itself replaced), until `shutdown`
/// resolves. Reloads run on the blocking pool. Errors only when the watch cannot be set up.
pub fn spawn_watcher<F>(handle: Arc<RulesHandle>, shutdown: F) -> notify::Result<JoinHandle<()>>
where
    F: Future<Output = ()> + Send + 'static,
{
    let dir = std::path::absolute(handle.dir()).unwrap_or_else(|_| handle.dir().to_path_buf());
    let (tx, mut rx) = mpsc::unbounded_channel::<notify::Result<Event>>();
    let mut watcher = notify::recommended_watcher(move |event| {
        // The receiver is gone only after shutdown.
        let _ = tx.send(event);
    })?;
    let mut watches = Watches::new(&mut watcher, dir.clone())?;
    tracing::info!(dir = %dir.display(), "watching the rules folder");

    Ok(tokio::spawn(async move {
        let mut shutdown = std::pin::pin!(shutdown);
        // The watch is in place: anything saved from now on sends an event. What was saved
        // since the handle's first load (start-up takes a moment) sent none: look once.
        let first_look = Arc::clone(&handle);
        if let Err(e) = tokio::task::spawn_blocking(move || first_look.reload_if_changed()).await {
            tracing::error!(error = %e, "rules reload task failed");
        }
        loop {
            let event = tokio::select! {
                _ = &mut shutdown => break,
                event = rx.recv() => event,
            };
            let Some(event) = event else { break };
            if !is_relevant(&event, &dir) {
                continue;
            }
            // Debounce: wait until the folder has been quiet for DEBOUNCE.
            let give_up = Instant::now() + MAX_DEBOUNCE;
            loop {
                let quiet_until = (Instant::now() + DEBOUNCE).min(give_up);
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep_until(quiet_until) => break,
                    more = rx.recv() => if more.is_none() { break },
                }
            }
            if let Err(e) = watches.refresh(&mut watcher) {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the rules folder");
            }
            handle.reload_async().await;
        }
        // Keep the watcher alive for as long as the task runs.
        drop(watcher);
        tracing::info!(dir = %dir.display(), "rules watcher stopped");
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE_A: &str = "rules:\n  - id: a\n    keywords: [甲]\n    reply: a\n";
    const RULE_B: &str = "rules:\n  - id: b\n    keywords: [乙]\n    reply: b\n";
    const BROKEN: &str = "rules:\n  - id: c\n    keywords: [丙\n";

    fn handle_for(dir: &Path) -> RulesHandle {
        let (handle, warnings) = RulesHandle::load(dir, FaqSettings::default()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        handle
    }

    fn ids(handle: &RulesHandle) -> Vec<String> {
        handle
            .current()
            .rules()
            .iter()
            .map(|r| r.id.clone())
            .collect()
    }

    #[test]
    fn reload_swaps_refuses_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), RULE_A).unwrap();
        let counted = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&counted);
        let handle = handle_for(dir.path()).with_reload_hook(Box::new(move |o| {
            seen.lock().unwrap().push(o.label());
        }));
        let status = handle.status();
        assert_eq!((status.version, status.rules, status.faq), (1, 1, 0));
        assert!(status.last_error.is_none());
        assert!(chrono::DateTime::parse_from_rfc3339(&status.loaded_at).is_ok());

        // Nothing changed.
        assert!(matches!(handle.reload(), ReloadOutcome::Unchanged));

        // Add a file.
        std::fs::write(dir.path().join("b.yaml"), RULE_B).unwrap();
        assert!(matches!(
            handle.reload(),
            ReloadOutcome::Swapped {
                version: 2,
                rules: 2,
                ..
            }
        ));
        assert_eq!(ids(&handle), ["a", "b"]);

        // A broken file: refused whole, the old set keeps serving, the error is shown.
        let before = handle.current();
        std::fs::write(dir.path().join("c.yaml"), BROKEN).unwrap();
        let ReloadOutcome::Refused { diagnostics } = handle.reload() else {
            panic!("not refused")
        };
        assert!(
            diagnostics[0]
                .to_string()
                .contains("c.yaml:4:1: YAML syntax error")
        );
        assert!(Arc::ptr_eq(&before, &handle.current()));
        let status = handle.status();
        assert_eq!((status.version, status.rules), (2, 2));
        assert!(status.last_error.unwrap().contains("c.yaml:4:1"));

        // The next valid edit clears the error.
        std::fs::write(
            dir.path().join("c.yaml"),
            RULE_A.replace("id: a", "id: c").replace('甲', "丙"),
        )
        .unwrap();
        assert!(matches!(
            handle.reload(),
            ReloadOutcome::Swapped {
                version: 3,
                rules: 3,
                ..
            }
        ));
        assert!(handle.status().last_error.is_none());

        // Delete a file.
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        assert!(matches!(
            handle.reload(),
            ReloadOutcome::Swapped {
                version: 4,
                rules: 2,
                ..
            }
        ));
        assert_eq!(ids(&handle), ["b", "c"]);

        // Break, then revert to what is serving: unchanged, and the error is cleared.
        std::fs::write(dir.path().join("b.yaml"), BROKEN).unwrap();
        assert!(matches!(handle.reload(), ReloadOutcome::Refused { .. }));
        std::fs::write(dir.path().join("b.yaml"), RULE_B).unwrap();
        assert!(matches!(handle.reload(), ReloadOutcome::Unchanged));
        assert!(handle.status().last_error.is_none());
        assert_eq!(handle.status().version, 4);

        assert_eq!(
            *counted.lock().unwrap(),
            [
                "unchanged",
                "swapped",
                "refused",
                "swapped",
                "swapped",
                "refused",
                "unchanged"
            ]
        );
    }

    #[test]
    fn a_first_load_with_errors_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.yaml"), BROKEN).unwrap();
        let problems = RulesHandle::load(dir.path(), FaqSettings::default()).unwrap_err();
        assert_eq!(problems.len(), 1);
    }

    /// Polls `cond` until it holds or `within` has passed.
    async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if cond() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    const WITHIN: Duration = Duration::from_secs(10);

    /// Regression: a file saved between the first load and the watch being set up (start-up, or
    /// a test writing right after `spawn_app`) sent no event, and was not served until the next
    /// change.
    #[tokio::test]
    async fn a_change_saved_before_the_watch_is_set_up_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), RULE_A).unwrap();
        let counted = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&counted);
        let handle = Arc::new(handle_for(dir.path()).with_reload_hook(Box::new(move |o| {
            seen.lock().unwrap().push(o.label());
        })));
        std::fs::write(dir.path().join("b.yaml"), RULE_B).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = spawn_watcher(Arc::clone(&handle), async move {
            let _ = stopped.await;
        })
        .unwrap();
        assert!(eventually(WITHIN, || handle.status().version == 2).await);
        assert_eq!(ids(&handle), ["a", "b"]);
        stop.send(()).unwrap();
        tokio::time::timeout(WITHIN, task).await.unwrap().unwrap();
        assert_eq!(*counted.lock().unwrap(), ["swapped"]);
    }

    #[tokio::test]
    async fn the_watchers_first_look_at_an_unchanged_folder_is_silent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), RULE_A).unwrap();
        let handle = handle_for(dir.path());
        assert!(handle.reload_if_changed().is_none());
        assert_eq!(handle.status().version, 1);
        std::fs::write(dir.path().join("b.yaml"), RULE_B).unwrap();
        assert!(matches!(
            handle.reload_if_changed(),
            Some(ReloadOutcome::Swapped { version: 2, .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watcher_picks_up_every_kind_of_change() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("rules");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), RULE_A).unwrap();
        let handle = Arc::new(handle_for(&dir));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = spawn_watcher(Arc::clone(&handle), async move {
            let _ = stopped.await;
        })
        .unwrap();
        let version = |h: &RulesHandle| h.status().version;

        // Create.
        std::fs::write(dir.join("b.yaml"), RULE_B).unwrap();
        assert!(eventually(WITHIN, || version(&handle) == 2).await, "create");
        assert_eq!(ids(&handle), ["a", "b"]);

        // Write in place.
        std::fs::write(dir.join("b.yaml"), RULE_B.replace('乙', "丁")).unwrap();
        assert!(eventually(WITHIN, || version(&handle) == 3).await, "write");

        // An editor's save: write a temporary file, rename it over the old one.
        std::fs::write(dir.join(".a.yaml.tmp"), RULE_A.replace("id: a", "id: a2")).unwrap();
        std::fs::rename(dir.join(".a.yaml.tmp"), dir.join("a.yaml")).unwrap();
        assert!(eventually(WITHIN, || version(&handle) == 4).await, "rename");
        assert_eq!(ids(&handle), ["a2", "b"]);

        // Invalid YAML: refused, old rules keep serving, last_error set.
        std::fs::write(dir.join("b.yaml"), BROKEN).unwrap();
        assert!(
            eventually(WITHIN, || handle.status().last_error.is_some()).await,
            "refuse"
        );
        assert_eq!(version(&handle), 4);
        assert_eq!(ids(&handle), ["a2", "b"]);

        // The next valid edit clears it.
        std::fs::write(dir.join("b.yaml"), RULE_B).unwrap();
        assert!(
            eventually(WITHIN, || version(&handle) == 5).await,
            "recover"
        );
        assert!(handle.status().last_error.is_none());

        // Delete.
        std::fs::remove_file(dir.join("a.yaml")).unwrap();
        assert!(eventually(WITHIN, || version(&handle) == 6).await, "delete");
        assert_eq!(ids(&handle), ["b"]);

        // A new subfolder.
        std::fs::create_dir(dir.join("faq")).unwrap();
        std::fs::write(dir.join("faq").join("x.yaml"), RULE_A).unwrap();
        assert!(
            eventually(WITHIN, || version(&handle) == 7).await,
            "subfolder"
        );
        assert_eq!(ids(&handle), ["b", "a"]);

        // The rules folder itself replaced by another.
        let next = root.path().join("rules.next");
        std::fs::create_dir(&next).unwrap();
        std::fs::write(next.join("z.yaml"), RULE_A.replace("id: a", "id: z")).unwrap();
        std::fs::rename(&dir, root.path().join("rules.old")).unwrap();
        std::fs::rename(&next, &dir).unwrap();
        assert!(
            eventually(WITHIN, || ids(&handle) == ["z"]).await,
            "folder replaced"
        );
        // …and the new folder is watched.
        std::fs::write(dir.join("b.yaml"), RULE_B).unwrap();
        assert!(
            eventually(WITHIN, || ids(&handle) == ["b", "z"]).await,
            "watched anew"
        );

        stop.send(()).unwrap();
        tokio::time::timeout(WITHIN, task).await.unwrap().unwrap();
    }
}
