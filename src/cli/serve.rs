//! `kefu serve`: runs the daemon on a config file.

use std::path::Path;
use std::process::ExitCode;

use super::load_settings;
use crate::startup::Application;

pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let settings = load_settings(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Application::build(settings).await?;
        app.run_until_stopped().await
    })?;
    Ok(ExitCode::SUCCESS)
}
