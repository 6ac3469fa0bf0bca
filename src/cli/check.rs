//! `kefu check`: loads every rules folder exactly as `serve` would and prints each problem as
//! `path:line:column: message`. Exit 0 when valid (warnings allowed), 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::load_settings_or_default;
use crate::config::Settings;
use crate::rules::RuleSet;

/// Loads one folder for a tool, printing its diagnostics to stderr; `None` when it has errors.
pub fn load_rules(dir: &Path, settings: &Settings) -> Option<RuleSet> {
    let report = RuleSet::load_dir_with(
        dir,
        &settings.faq,
        &crate::startup::rule_load_options(settings),
    );
    for d in &report.diagnostics {
        eprintln!("{d}");
    }
    report.set
}

pub fn run(config: Option<&Path>, rules: Option<&Path>) -> anyhow::Result<ExitCode> {
    let settings = load_settings_or_default(config)?;
    let dirs: Vec<PathBuf> = match rules {
        Some(dir) => vec![dir.to_path_buf()],
        None => settings.all_rules_dirs(),
    };
    let mut ok = true;
    for dir in &dirs {
        let report = RuleSet::load_dir_with(
            dir,
            &settings.faq,
            &crate::startup::rule_load_options(&settings),
        );
        for d in &report.diagnostics {
            println!("{d}");
        }
        match &report.set {
            Some(set) => eprintln!(
                "{}: ok, {} rules, {} FAQ entries",
                dir.display(),
                set.rule_count(),
                set.faq().len()
            ),
            None => ok = false,
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
