//! Prometheus metrics, all under `kefu_`, with bounded label sets: app ids, rule and FAQ ids,
//! message types, outcomes and refusal reasons — never openids or message text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppTypeLabels {
    pub app: String,
    pub r#type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub app: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaqLabels {
    pub faq: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Every series kefu exports. Cheap to clone (the metrics are shared handles).
#[derive(Clone)]
pub struct Metrics {
    /// Pushes accepted, by app and message type.
    pub messages: Family<AppTypeLabels, Counter>,
    /// Decisions made by a rule, by rule id.
    pub rule_hits: Family<RuleLabels, Counter>,
    /// Answers from the FAQ, by entry id.
    pub faq_hits: Family<FaqLabels, Counter>,
    /// Clarify menus sent.
    pub clarifies: Family<AppLabels, Counter>,
    /// Transfers to the human customer-service tool.
    pub handoffs: Family<AppLabels, Counter>,
    /// Messages nothing answered (default rule or ignored).
    pub unmatched: Family<AppLabels, Counter>,
    /// Send attempts by outcome (sent, retry, failed, dropped, dry_run).
    pub sends: Family<OutcomeLabels, Counter>,
    /// Outbox entries waiting to be sent.
    pub outbox_depth: Gauge,
    /// Rule reloads by outcome (swapped, refused).
    pub reloads: Family<OutcomeLabels, Counter>,
    /// Time from request to response of pushes, in seconds.
    pub request_seconds: Histogram,
    /// Refused requests by reason.
    pub refused: Family<ReasonLabels, Counter>,
    /// Replays of a memoized answer to a repeated push.
    pub duplicates: Family<AppLabels, Counter>,
    /// access_token fetches by app and outcome (ok, error).
    pub token_fetches: Family<AppOutcomeLabels, Counter>,
    /// Store operations that failed, by operation (claim, session, commit, probe, read, …).
    pub store_errors: Family<OpLabels, Counter>,
    /// Outbox entries sent again after a restart because a send was in flight when kefu
    /// stopped (WeChat may have accepted the first one: the duplicate an API without
    /// idempotency keys allows).
    pub resent_after_restart: Counter,
    /// With a shared store: outcomes of sends refused because a peer had taken the entry over
    /// after this instance's lease ended (the peer sends it again: a possible duplicate).
    pub stale_fences: Counter,
    /// Calls to operators' backends (`fetch` rules), by rule and outcome (ok, timeout, status,
    /// too_large, bad_json, redirect, missing_field, error).
    pub fetches: Family<RuleOutcomeLabels, Counter>,
    /// Image files prepared for a send, by app and outcome (cached, uploaded, reuploaded,
    /// missing_file, upload_failed).
    pub media: Family<AppOutcomeLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleOutcomeLabels {
    pub rule: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppOutcomeLabels {
    pub app: String,
    pub outcome: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            messages: Family::default(),
            rule_hits: Family::default(),
            faq_hits: Family::default(),
            clarifies: Family::default(),
            handoffs: Family::default(),
            unmatched: Family::default(),
            sends: Family::default(),
            outbox_depth: Gauge::default(),
            reloads: Family::default(),
            request_seconds: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 4.5,
            ]),
            refused: Family::default(),
            duplicates: Family::default(),
            token_fetches: Family::default(),
            store_errors: Family::default(),
            resent_after_restart: Counter::default(),
            stale_fences: Counter::default(),
            fetches: Family::default(),
            media: Family::default(),
        }
    }
}

impl Metrics {
    /// Registers every series in a fresh registry.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("kefu");
        r.register(
            "messages",
            "Pushes accepted, by app and message type",
            self.messages.clone(),
        );
        r.register(
            "rule_hits",
            "Decisions made by a rule",
            self.rule_hits.clone(),
        );
        r.register("faq_hits", "Answers from the FAQ", self.faq_hits.clone());
        r.register("clarifies", "Clarify menus sent", self.clarifies.clone());
        r.register(
            "handoffs",
            "Transfers to human customer service",
            self.handoffs.clone(),
        );
        r.register(
            "unmatched",
            "Messages no rule or FAQ entry answered",
            self.unmatched.clone(),
        );
        r.register("sends", "Send attempts by outcome", self.sends.clone());
        r.register(
            "outbox_depth",
            "Outbox entries waiting to be sent",
            self.outbox_depth.clone(),
        );
        r.register("reloads", "Rule reloads by outcome", self.reloads.clone());
        r.register(
            "request_duration_seconds",
            "Time to answer a push",
            self.request_seconds.clone(),
        );
        r.register(
            "refused",
            "Refused requests by reason",
            self.refused.clone(),
        );
        r.register(
            "duplicates",
            "Repeated pushes answered from the memo",
            self.duplicates.clone(),
        );
        r.register(
            "token_fetches",
            "access_token fetches by app and outcome",
            self.token_fetches.clone(),
        );
        r.register(
            "store_errors",
            "Store operations that failed, by operation",
            self.store_errors.clone(),
        );
        r.register(
            "outbox_resent_after_restart",
            "Outbox entries sent again after a restart cut their first send off in flight",
            self.resent_after_restart.clone(),
        );
        r.register(
            "outbox_stale_fence",
            "Send outcomes refused because another instance had taken the entry over (shared store)",
            self.stale_fences.clone(),
        );
        r.register(
            "fetch",
            "Calls to operators' backends by fetch rules, by rule and outcome",
            self.fetches.clone(),
        );
        r.register(
            "media",
            "Image files prepared for a send (upload or cache), by app and outcome",
            self.media.clone(),
        );
        r
    }

    /// Counts the pushes a commit recorded: their messages, the rules or FAQ entries that
    /// decided, handoffs, menus, and those nothing answered. A commit's pushes share few label
    /// values, so they are tallied first and each series is looked up once per value.
    pub fn count_recorded(&self, records: &[&crate::store::PushRecord]) {
        fn bump<K: PartialEq>(tally: &mut Vec<(K, u64)>, key: K) {
            match tally.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => tally.push((key, 1)),
            }
        }
        let mut messages: Vec<((&str, &'static str), u64)> = Vec::new();
        let mut rules: Vec<(&str, u64)> = Vec::new();
        let mut faqs: Vec<(&str, u64)> = Vec::new();
        let mut handoffs: Vec<(&str, u64)> = Vec::new();
        let mut clarifies: Vec<(&str, u64)> = Vec::new();
        let mut unmatched: Vec<(&str, u64)> = Vec::new();
        for record in records {
            let log = &record.log;
            let app = record.app.as_str();
            bump(
                &mut messages,
                (app, crate::protocol::message::msg_type_label(&log.msg_type)),
            );
            if let Some(rule) = &log.rule {
                bump(&mut rules, rule.as_str());
            }
            if let Some(faq) = &log.faq {
                bump(&mut faqs, faq.as_str());
            }
            if log.handoff {
                bump(&mut handoffs, app);
            }
            match log.action.as_ref() {
                "clarify" => bump(&mut clarifies, app),
                "default" | "ignore" => bump(&mut unmatched, app),
                _ => {}
            }
        }
        for ((app, r#type), n) in messages {
            self.messages
                .get_or_create(&AppTypeLabels {
                    app: app.to_string(),
                    r#type: r#type.to_string(),
                })
                .inc_by(n);
        }
        for (rule, n) in rules {
            self.rule_hits
                .get_or_create(&RuleLabels {
                    rule: rule.to_string(),
                })
                .inc_by(n);
        }
        for (faq, n) in faqs {
            self.faq_hits
                .get_or_create(&FaqLabels {
                    faq: faq.to_string(),
                })
                .inc_by(n);
        }
        for (family, tally) in [
            (&self.handoffs, handoffs),
            (&self.clarifies, clarifies),
            (&self.unmatched, unmatched),
        ] {
            for (app, n) in tally {
                family
                    .get_or_create(&AppLabels {
                        app: app.to_string(),
                    })
                    .inc_by(n);
            }
        }
    }

    /// Counts a failed store operation.
    /// Counts one call of a `fetch` rule.
    pub fn fetch_outcome(&self, rule: &str, outcome: &str) {
        self.fetches
            .get_or_create(&RuleOutcomeLabels {
                rule: rule.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts one image file prepared for a send.
    pub fn media_outcome(&self, app: &str, outcome: &str) {
        self.media
            .get_or_create(&AppOutcomeLabels {
                app: app.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn store_error(&self, op: &str) {
        self.store_errors
            .get_or_create(&OpLabels { op: op.to_string() })
            .inc();
    }

    pub fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn send_outcome(&self, outcome: &str) {
        self.sends
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn reload_outcome(&self, outcome: &str) {
        self.reloads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::push;

    #[test]
    fn a_commit_is_counted_per_label_value_whatever_its_order() {
        let metrics = Metrics::default();
        let mut faq = push("2", "u", 0, &[]);
        faq.log.rule = None;
        faq.log.faq = Some("mp-deregister".into());
        faq.log.action = "faq".into();
        let mut unmatched = push("3", "v", 0, &[]);
        unmatched.log.rule = None;
        unmatched.log.action = "default".into();
        let mut handoff = push("4", "u", 0, &[]);
        handoff.log.handoff = true;
        handoff.log.msg_type = "event".into();
        let (first, last) = (push("1", "u", 0, &[]), push("5", "w", 0, &[]));
        metrics.count_recorded(&[&first, &faq, &unmatched, &handoff, &last]);
        metrics.count_recorded(&[&push("6", "u", 0, &[])]);
        let text = render(&metrics.registry());
        for line in [
            "kefu_messages_total{app=\"demo\",type=\"text\"} 5",
            "kefu_messages_total{app=\"demo\",type=\"event\"} 1",
            "kefu_rule_hits_total{rule=\"r\"} 4",
            "kefu_faq_hits_total{faq=\"mp-deregister\"} 1",
            "kefu_unmatched_total{app=\"demo\"} 1",
            "kefu_handoffs_total{app=\"demo\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
