//! `kefu eval`: runs `{q, expect, also}` cases against the rules and FAQ.
//! STUB until the FAQ evaluation lands.

use std::path::Path;
use std::process::ExitCode;

pub fn run(
    _config: &Path,
    _rules: Option<&Path>,
    _json: bool,
    _min_accuracy: Option<f64>,
    _max_false: Option<usize>,
    _cases: &Path,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("kefu eval is not available yet")
}
