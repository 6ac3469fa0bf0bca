//! TEMPORARY STAND-IN until the rules work lands: a handle holding the current rule set.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{LoadReport, RuleSet};
use crate::faq::FaqSettings;

#[derive(Debug, Clone, serde::Serialize)]
pub struct RulesStatus {
    pub version: u64,
    pub rules: usize,
    pub faq: usize,
    pub loaded_at: String,
    pub last_error: Option<String>,
}

pub struct RulesHandle {
    current: ArcSwap<RuleSet>,
    dir: PathBuf,
    faq: FaqSettings,
}

impl RulesHandle {
    pub fn load(dir: PathBuf, faq: FaqSettings) -> (Option<Self>, LoadReport) {
        let mut report = RuleSet::load_dir(&dir, &faq);
        match report.set.take() {
            Some(set) => (
                Some(Self {
                    current: ArcSwap::from_pointee(set),
                    dir,
                    faq,
                }),
                report,
            ),
            None => (None, report),
        }
    }

    pub fn current(&self) -> Arc<RuleSet> {
        self.current.load_full()
    }

    pub fn status(&self) -> RulesStatus {
        let set = self.current.load();
        RulesStatus {
            version: 1,
            rules: set.rule_count(),
            faq: set.faq().len(),
            loaded_at: String::new(),
            last_error: None,
        }
    }

    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }

    pub fn faq_settings(&self) -> &FaqSettings {
        &self.faq
    }
}

impl RulesHandle {
    pub fn reload(&self) {
        let mut report = RuleSet::load_dir(&self.dir, &self.faq);
        if let Some(set) = report.set.take() {
            self.current.store(Arc::new(set));
        }
    }
}
