//! `kefu upload --app A FILE`: uploads an image as the app's temporary media and prints its
//! media_id (SPEC §10), for a rule's `media_id:` or to check an app's upload works. The file is
//! checked as `kefu check` checks `image: {file}` (JPG or PNG, within WeChat's size limit).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;

use super::load_settings;
use crate::config::AppKind;
use crate::rules::files::{self, ImageKind};
use crate::wechat::{ClientOptions, SendOutcome, WechatClient};

/// `kefu upload`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct UploadArgs {
    #[command(flatten)]
    pub daemon: super::DaemonConfig,
    /// The app whose media the image becomes.
    #[arg(long)]
    pub app: String,
    /// A JPG or PNG file.
    pub file: PathBuf,
}

pub fn run(args: &UploadArgs) -> anyhow::Result<ExitCode> {
    let config = args.daemon.config.as_path();
    let settings = load_settings(config)?;
    let app = settings
        .app(&args.app)
        .ok_or_else(|| anyhow!("no app {:?} in {}", args.app, config.display()))?;
    let limit = match app.kind {
        AppKind::OfficialAccount => files::MAX_IMAGE_BYTES_OFFICIAL_ACCOUNT,
        _ => files::MAX_IMAGE_BYTES_MINIPROGRAM,
    };
    let bytes = match std::fs::read(&args.file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("kefu upload: {}: {e}", args.file.display());
            return Ok(ExitCode::from(1));
        }
    };
    let Some(kind) = ImageKind::sniff(&bytes) else {
        eprintln!(
            "kefu upload: {} is not a JPG or PNG (WeChat takes only those)",
            args.file.display()
        );
        return Ok(ExitCode::from(1));
    };
    if bytes.len() as u64 > limit {
        eprintln!(
            "kefu upload: {} is {} bytes; WeChat takes at most {limit}",
            args.file.display(),
            bytes.len()
        );
        return Ok(ExitCode::from(1));
    }
    if app.effective_dry_run() {
        eprintln!(
            "kefu upload: app {:?} is in dry-run (no secret, or dry_run: true): nothing was \
             uploaded",
            app.id
        );
        return Ok(ExitCode::from(1));
    }
    let file_name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let client = WechatClient::new(
        &settings.api_base,
        std::slice::from_ref(app),
        ClientOptions::default(),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let uploaded =
        runtime.block_on(client.upload_image(&app.id, &file_name, kind.content_type(), bytes));
    match uploaded {
        Ok(uploaded) => {
            println!("{}", uploaded.media_id);
            Ok(ExitCode::SUCCESS)
        }
        Err(SendOutcome::Failed { reason, .. })
        | Err(SendOutcome::Retry { reason })
        | Err(SendOutcome::Unknown { reason }) => {
            eprintln!("kefu upload: {reason}");
            Ok(ExitCode::from(1))
        }
        Err(SendOutcome::Accepted) => Ok(ExitCode::from(1)),
    }
}
