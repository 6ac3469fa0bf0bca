//! `kefu stats [--config FILE] [--since 7d]`: prints what the conversation log says since a
//! duration ago (SPEC §1). The report itself is [`crate::store::stats`]; this only parses the
//! duration, opens the store's read side (whatever the store) and prints.

use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config::Settings;

/// Parses `7d`, `24h`, `30m` or `90s` into seconds.
pub fn parse_since(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let Some(unit) = text.chars().last() else {
        bail!("--since: empty duration (try 7d, 24h or 30m)");
    };
    let per_unit: i64 = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => bail!("--since {text:?}: end it with d, h, m or s (as in 7d, 24h, 30m)"),
    };
    let number = &text[..text.len() - unit.len_utf8()];
    let n: i64 = number.parse().ok().filter(|n| *n > 0).with_context(|| {
        format!("--since {text:?}: expected a positive whole number before {unit:?}")
    })?;
    n.checked_mul(per_unit)
        .with_context(|| format!("--since {text:?}: too long"))
}

/// `kefu stats`' flags.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub daemon: super::DaemonConfig,
    /// How far back: 30m, 24h, 7d.
    #[arg(long, default_value = "7d")]
    pub since: String,
    #[arg(long)]
    pub json: bool,
}

/// Runs `kefu stats`.
pub fn run(args: &StatsArgs) -> anyhow::Result<ExitCode> {
    let settings = &super::load_settings(&args.daemon.config)?;
    run_stats(settings, &args.since, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the report of the conversation log since `since` ago.
pub fn run_stats(settings: &Settings, since: &str, json: bool) -> anyhow::Result<()> {
    let secs = parse_since(since)?;
    let now = crate::clock::unix_now();
    let ops = crate::startup::operations(settings)?;
    let report = ops
        .stats(now.saturating_sub(secs), settings.tz)
        .context("kefu stats: reading the conversation log")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
        let dry: Vec<&str> = settings
            .apps
            .iter()
            .filter(|a| a.effective_dry_run())
            .map(|a| a.id.as_str())
            .collect();
        if !dry.is_empty() {
            println!(
                "note: {} in dry-run: their sends are recorded as sent but were only logged",
                dry.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_since("7d").unwrap(), 7 * 86_400);
        assert_eq!(parse_since("24h").unwrap(), 86_400);
        assert_eq!(parse_since(" 30m ").unwrap(), 1_800);
        assert_eq!(parse_since("90s").unwrap(), 90);
        for bad in [
            "",
            "7",
            "d",
            "-1d",
            "0h",
            "1.5d",
            "7w",
            "七d",
            "99999999999999999d",
        ] {
            assert!(parse_since(bad).is_err(), "{bad:?} accepted");
        }
    }
}
