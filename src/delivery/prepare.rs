//! Messages that need work before they can be sent (SPEC §10), prepared by the outbox worker
//! just before the send: [`Preparing`] wraps the API client's [`Deliver`].
//!
//! - An image file ([`OutboundMessage::ImageFile`], a Mini Program card's `thumb_file`): the
//!   file is read and hashed (SHA-256); the media cache ([`MediaCache`], in the store, shared by
//!   every instance) gives the media_id of that content for the app, unless it is missing or due
//!   for renewal (`reupload_after`, under WeChat's 3 days); else the file is uploaded and the new
//!   media_id stored. A send refused with 40007 (WeChat forgot the media) forgets that media_id
//!   (compare-and-delete: a newer upload by a peer stays), uploads again and sends once more. A
//!   file missing or unreadable at send time is a failed send with that reason, and counted in
//!   `kefu_media_total{outcome="missing_file"}`.
//! - A fetch reply ([`OutboundMessage::Fetch`]): the backend is called ([`Fetcher`]), the text
//!   composed (or the fallback), split into parts of at most 2,048 bytes and sent in order. The
//!   entry is settled only after that, so a crash before the call finishes neither loses the
//!   reply nor sends it twice; the parts of one fetched text count as one message against the
//!   quota, which was spent when the push was recorded. A retry after a failure in the middle of
//!   the parts calls the backend again and sends every part again (the parts already accepted
//!   arrive twice): rare, since a fetched text rarely needs more than one part.
//!
//! Depends on the store's [`MediaCache`], the API client (through [`Upload`] and [`Deliver`])
//! and [`crate::fetch`]; never on SQLite or the config file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::fetch::{Caller, Fetcher};
use crate::metrics::Metrics;
use crate::openid::OpenId;
use crate::outbound::{MAX_TEXT_BYTES, OutboundMessage, split_text};
use crate::rules::files::ImageKind;
use crate::store::{MediaCache, MediaEntry};
use crate::wechat::errcode::NOT_FROM_WECHAT;
use crate::wechat::{BoxFuture, Deliver, SendOutcome, Uploaded, WechatClient};

/// WeChat's errcode for a media_id it does not know (expired temporary media).
pub const INVALID_MEDIA_ID: i64 = 40007;

/// How long WeChat keeps temporary media.
pub const TEMPORARY_MEDIA_LIFETIME: Duration = Duration::from_secs(3 * 24 * 3600);

/// Uploads an image as temporary media (the API client; a fake in tests).
pub trait Upload: Send + Sync {
    /// Uploads `bytes` as `file_name` of `content_type` for `app`.
    fn upload_image<'a>(
        &'a self,
        app: &'a str,
        file_name: &'a str,
        content_type: &'a str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<Uploaded, SendOutcome>>;
}

impl Upload for WechatClient {
    fn upload_image<'a>(
        &'a self,
        app: &'a str,
        file_name: &'a str,
        content_type: &'a str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<Uploaded, SendOutcome>> {
        Box::pin(WechatClient::upload_image(
            self,
            app,
            file_name,
            content_type,
            bytes,
        ))
    }
}

/// Tuning of [`Preparing`].
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// A cached media_id older than this is uploaded again before use (WeChat forgets
    /// temporary media after 3 days).
    pub reupload_after: Duration,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            reupload_after: TEMPORARY_MEDIA_LIFETIME - Duration::from_secs(3600),
        }
    }
}

/// A [`Deliver`] that prepares image files and fetch replies, then sends through `inner`.
pub struct Preparing {
    inner: Arc<dyn Deliver>,
    media: Arc<dyn MediaCache>,
    upload: Arc<dyn Upload>,
    fetcher: Fetcher,
    options: PrepareOptions,
    metrics: Option<Metrics>,
}

impl Preparing {
    pub fn new(
        inner: Arc<dyn Deliver>,
        media: Arc<dyn MediaCache>,
        upload: Arc<dyn Upload>,
        fetcher: Fetcher,
        options: PrepareOptions,
        metrics: Option<Metrics>,
    ) -> Self {
        Self {
            inner,
            media,
            upload,
            fetcher,
            options,
            metrics,
        }
    }

    fn count(&self, app: &str, outcome: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.media_outcome(app, outcome);
        }
    }

    /// Sends `message`; with a `fetch` reply, also the text it was composed into.
    async fn send(
        &self,
        app: &str,
        openid: &OpenId,
        message: &OutboundMessage,
    ) -> (SendOutcome, Option<String>) {
        let outcome = match message {
            OutboundMessage::ImageFile { name, path } => {
                self.send_file(app, openid, name, path, |media_id| OutboundMessage::Image {
                    media_id,
                })
                .await
            }
            OutboundMessage::MiniProgramPageFile {
                title,
                pagepath,
                thumb_name,
                thumb_path,
            } => {
                self.send_file(app, openid, thumb_name, thumb_path, |thumb_media_id| {
                    OutboundMessage::MiniProgramPage {
                        title: title.clone(),
                        pagepath: pagepath.clone(),
                        thumb_media_id,
                    }
                })
                .await
            }
            OutboundMessage::Fetch(reply) => {
                let composed = self
                    .fetcher
                    .compose(Caller { app, openid }, reply, None)
                    .await;
                for part in split_text(&composed.text, MAX_TEXT_BYTES) {
                    let outcome = self
                        .inner
                        .deliver(app, openid, &OutboundMessage::text(part))
                        .await;
                    if outcome != SendOutcome::Accepted {
                        return (outcome, None);
                    }
                }
                return (SendOutcome::Accepted, Some(composed.text));
            }
            other => self.inner.deliver(app, openid, other).await,
        };
        (outcome, None)
    }

    /// Sends the message `build` makes from the media_id of the file at `path`.
    async fn send_file(
        &self,
        app: &str,
        openid: &OpenId,
        name: &str,
        path: &str,
        build: impl Fn(String) -> OutboundMessage,
    ) -> SendOutcome {
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(e) => {
                self.count(app, "missing_file");
                return SendOutcome::Failed {
                    errcode: NOT_FROM_WECHAT,
                    reason: format!("image file {name:?} cannot be read: {e}"),
                };
            }
        };
        let Some(kind) = ImageKind::sniff(&bytes) else {
            self.count(app, "missing_file");
            return SendOutcome::Failed {
                errcode: NOT_FROM_WECHAT,
                reason: format!("image file {name:?} is no longer a JPG or PNG"),
            };
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let file_name = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".to_string());
        let now = crate::clock::unix_now();
        let cached = match self.media.media(app, &sha256, now).await {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(app, error = %e, "media cache unreadable: uploading the file");
                None
            }
        };
        let media_id = match cached {
            Some(entry) => {
                self.count(app, "cached");
                entry.media_id
            }
            None => {
                match self
                    .upload(app, &sha256, &file_name, kind, bytes.clone(), "uploaded")
                    .await
                {
                    Ok(id) => id,
                    Err(outcome) => return outcome,
                }
            }
        };
        let outcome = self
            .inner
            .deliver(app, openid, &build(media_id.clone()))
            .await;
        if !matches!(outcome, SendOutcome::Failed { errcode, .. } if errcode == INVALID_MEDIA_ID) {
            return outcome;
        }
        tracing::info!(
            app,
            file = name,
            "WeChat forgot the media (40007): uploading it again"
        );
        if let Err(e) = self.media.forget_media(app, &sha256, &media_id).await {
            tracing::warn!(app, error = %e, "cannot forget the refused media_id");
        }
        match self
            .upload(app, &sha256, &file_name, kind, bytes, "reuploaded")
            .await
        {
            Ok(id) => self.inner.deliver(app, openid, &build(id)).await,
            Err(outcome) => outcome,
        }
    }

    /// Uploads and stores the media_id; `Err` is the send's outcome.
    async fn upload(
        &self,
        app: &str,
        sha256: &str,
        file_name: &str,
        kind: ImageKind,
        bytes: Vec<u8>,
        label: &str,
    ) -> Result<String, SendOutcome> {
        let uploaded = match self
            .upload
            .upload_image(app, file_name, kind.content_type(), bytes)
            .await
        {
            Ok(uploaded) => uploaded,
            Err(outcome) => {
                self.count(app, "upload_failed");
                return Err(match outcome {
                    SendOutcome::Failed { errcode, reason } => SendOutcome::Failed {
                        errcode,
                        reason: format!("image upload failed: {reason}"),
                    },
                    SendOutcome::Retry { reason } | SendOutcome::Unknown { reason } => {
                        SendOutcome::Retry {
                            reason: format!("image upload failed: {reason}"),
                        }
                    }
                    SendOutcome::Accepted => SendOutcome::Retry {
                        reason: "image upload failed".into(),
                    },
                });
            }
        };
        self.count(app, label);
        let now = crate::clock::unix_now();
        let uploaded_at = uploaded.created_at.unwrap_or(now);
        let keep = i64::try_from(self.options.reupload_after.as_secs()).unwrap_or(i64::MAX);
        let entry = MediaEntry {
            media_id: uploaded.media_id.clone(),
            uploaded_at,
            expires_at: now.saturating_add(keep),
        };
        if let Err(e) = self.media.put_media(app, sha256, entry).await {
            // The media_id still works for this send; the next one uploads again.
            tracing::warn!(app, error = %e, "cannot store the uploaded media_id");
        }
        Ok(uploaded.media_id)
    }
}

impl Deliver for Preparing {
    fn deliver<'a>(
        &'a self,
        app_id: &'a str,
        openid: &'a OpenId,
        message: &'a OutboundMessage,
    ) -> BoxFuture<'a, SendOutcome> {
        Box::pin(async move { self.send(app_id, openid, message).await.0 })
    }

    fn deliver_noting<'a>(
        &'a self,
        app_id: &'a str,
        openid: &'a OpenId,
        message: &'a OutboundMessage,
    ) -> BoxFuture<'a, (SendOutcome, Option<String>)> {
        Box::pin(self.send(app_id, openid, message))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap, VecDeque};
    use std::sync::Mutex;

    use super::*;
    use crate::outbound::{FetchReply, FetchRequest};
    use crate::store::StoreError;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[derive(Default)]
    struct MemCache(Mutex<HashMap<(String, String), MediaEntry>>);

    impl MediaCache for MemCache {
        fn media(
            &self,
            app: &str,
            sha256: &str,
            now: i64,
        ) -> BoxFuture<'_, Result<Option<MediaEntry>, StoreError>> {
            let got = self
                .0
                .lock()
                .unwrap()
                .get(&(app.to_string(), sha256.to_string()))
                .filter(|e| e.expires_at > now)
                .cloned();
            Box::pin(async move { Ok(got) })
        }
        fn put_media(
            &self,
            app: &str,
            sha256: &str,
            entry: MediaEntry,
        ) -> BoxFuture<'_, Result<(), StoreError>> {
            self.0
                .lock()
                .unwrap()
                .insert((app.to_string(), sha256.to_string()), entry);
            Box::pin(async { Ok(()) })
        }
        fn forget_media(
            &self,
            app: &str,
            sha256: &str,
            media_id: &str,
        ) -> BoxFuture<'_, Result<(), StoreError>> {
            let mut map = self.0.lock().unwrap();
            let key = (app.to_string(), sha256.to_string());
            if map.get(&key).is_some_and(|e| e.media_id == media_id) {
                map.remove(&key);
            }
            Box::pin(async { Ok(()) })
        }
    }

    #[derive(Default)]
    struct FakeUpload(Mutex<Vec<String>>);

    impl Upload for FakeUpload {
        fn upload_image<'a>(
            &'a self,
            _app: &'a str,
            file_name: &'a str,
            content_type: &'a str,
            _bytes: Vec<u8>,
        ) -> BoxFuture<'a, Result<Uploaded, SendOutcome>> {
            assert_eq!(content_type, "image/png");
            let mut uploads = self.0.lock().unwrap();
            uploads.push(file_name.to_string());
            let id = format!("m{}", uploads.len());
            Box::pin(async move {
                Ok(Uploaded {
                    media_id: id,
                    created_at: None,
                })
            })
        }
    }

    /// Records what is sent; answers from a script, then `Accepted`.
    #[derive(Default)]
    struct FakeDeliver {
        sent: Mutex<Vec<OutboundMessage>>,
        script: Mutex<VecDeque<SendOutcome>>,
    }

    impl Deliver for FakeDeliver {
        fn deliver<'a>(
            &'a self,
            _app: &'a str,
            _openid: &'a OpenId,
            message: &'a OutboundMessage,
        ) -> BoxFuture<'a, SendOutcome> {
            self.sent.lock().unwrap().push(message.clone());
            let outcome = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(SendOutcome::Accepted);
            Box::pin(async move { outcome })
        }
    }

    fn forgotten() -> SendOutcome {
        SendOutcome::Failed {
            errcode: INVALID_MEDIA_ID,
            reason: "invalid media_id".into(),
        }
    }

    struct Rig {
        deliver: Arc<FakeDeliver>,
        upload: Arc<FakeUpload>,
        preparing: Preparing,
        file: OutboundMessage,
        _dir: tempfile::TempDir,
    }

    fn rig() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poster.png");
        std::fs::write(&path, PNG).unwrap();
        let deliver = Arc::new(FakeDeliver::default());
        let upload = Arc::new(FakeUpload::default());
        let preparing = Preparing::new(
            deliver.clone(),
            Arc::new(MemCache::default()),
            upload.clone(),
            Fetcher::new(Arc::new(|_| None), None).unwrap(),
            PrepareOptions::default(),
            None,
        );
        Rig {
            deliver,
            upload,
            preparing,
            file: OutboundMessage::ImageFile {
                name: "poster.png".into(),
                path: path.display().to_string(),
            },
            _dir: dir,
        }
    }

    fn image(id: &str) -> OutboundMessage {
        OutboundMessage::Image {
            media_id: id.into(),
        }
    }

    #[tokio::test]
    async fn a_file_is_uploaded_once_and_then_served_from_the_cache() {
        let r = rig();
        for _ in 0..2 {
            let outcome = r.preparing.deliver("a", &"u".into(), &r.file).await;
            assert_eq!(outcome, SendOutcome::Accepted);
        }
        assert_eq!(*r.upload.0.lock().unwrap(), ["poster.png"]);
        assert_eq!(*r.deliver.sent.lock().unwrap(), [image("m1"), image("m1")]);
    }

    #[tokio::test]
    async fn a_40007_uploads_again_and_resends_once_only() {
        let r = rig();
        r.deliver
            .script
            .lock()
            .unwrap()
            .extend([forgotten(), SendOutcome::Accepted]);
        assert_eq!(
            r.preparing.deliver("a", &"u".into(), &r.file).await,
            SendOutcome::Accepted
        );
        assert_eq!(*r.deliver.sent.lock().unwrap(), [image("m1"), image("m2")]);
        // Refused again after the new upload: failed, no loop.
        r.deliver
            .script
            .lock()
            .unwrap()
            .extend([forgotten(), forgotten()]);
        let outcome = r.preparing.deliver("a", &"u".into(), &r.file).await;
        assert_eq!(outcome, forgotten());
        assert_eq!(r.upload.0.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_missing_file_fails_without_an_upload() {
        let r = rig();
        let gone = OutboundMessage::ImageFile {
            name: "gone.png".into(),
            path: "/nonexistent/gone.png".into(),
        };
        let outcome = r.preparing.deliver("a", &"u".into(), &gone).await;
        assert!(
            matches!(&outcome, SendOutcome::Failed { reason, .. } if reason.contains("gone.png")),
            "{outcome:?}"
        );
        assert!(r.upload.0.lock().unwrap().is_empty());
        assert!(r.deliver.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_fetch_that_cannot_connect_sends_the_fallback_in_parts() {
        let r = rig();
        let fetch = OutboundMessage::Fetch(Box::new(FetchReply {
            rule: "r".into(),
            request: FetchRequest {
                method: "GET".into(),
                url: "http://127.0.0.1:9/x".into(),
                headers: BTreeMap::new(),
                timeout_ms: 1000,
                text: String::new(),
                captures: BTreeMap::from([("n".to_string(), "7".to_string())]),
            },
            template: "{fetch.a}".into(),
            fallback: format!("{{n}}\n{}", "字".repeat(700)),
        }));
        assert_eq!(
            r.preparing.deliver("a", &"u".into(), &fetch).await,
            SendOutcome::Accepted
        );
        let sent = r.deliver.sent.lock().unwrap().clone();
        assert_eq!(sent.first(), Some(&OutboundMessage::text("7")));
        assert_eq!(sent.len(), 3, "a line end, then a char boundary: {sent:?}");
    }
}
