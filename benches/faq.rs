//! `ask` on the shipped deregistration FAQ: what one message costs the FAQ matcher.
//!
//! Run: `cargo bench --bench faq`. The FAQ file is parsed here with a few lines of serde (the
//! rules loader owns reading rules files; the bench must not depend on its progress).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kefu::diag::{Located, Location};
use kefu::faq::model::{ClarifySpec, FaqEntrySpec, SynonymGroupSpec};
use kefu::faq::{Detail, FaqIndex, FaqSettings, FaqSource};
use kefu::text::normalize;

/// The FAQ keys of a rules file.
#[derive(serde::Deserialize)]
struct FaqFile {
    /// `faq:` entries.
    #[serde(default)]
    faq: Vec<FaqEntrySpec>,
    /// `synonyms:` groups.
    #[serde(default)]
    synonyms: Vec<SynonymGroupSpec>,
    /// `clarify:` topics.
    #[serde(default)]
    clarify: Vec<ClarifySpec>,
}

fn located<T>(items: Vec<T>) -> Vec<Located<T>> {
    items
        .into_iter()
        .map(|value| Located {
            location: Location::new("rules/faq/deregistration.yaml", 1, 1),
            value,
        })
        .collect()
}

fn shipped() -> FaqIndex {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/faq/deregistration.yaml");
    let text = std::fs::read_to_string(path).expect("read the shipped FAQ");
    let file: FaqFile = serde_yaml::from_str(&text).expect("parse the shipped FAQ");
    let source = FaqSource {
        entries: located(file.faq),
        synonyms: located(file.synonyms),
        clarify: located(file.clarify),
    };
    let (index, diagnostics) = FaqIndex::build(source, &FaqSettings::default());
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    index.expect("the shipped FAQ builds")
}

fn bench_ask(c: &mut Criterion) {
    let index = shipped();
    let messages = [
        ("answer_short", "个体户小程序注销流程"),
        (
            "answer_long",
            "你好，请问一下我们公司营业执照已经注销了，之前的订阅号要怎么注销呢？需要准备什么材料，谢谢",
        ),
        ("clarify_menu", "注销需要什么"),
        ("clarify_close", "政府单位没有对公账户怎么注销"),
        ("off_topic", "公众号怎么发文章"),
    ];
    let mut group = c.benchmark_group("faq_ask");
    for (name, message) in messages {
        let normalized = normalize(message);
        group.bench_function(name, |b| {
            b.iter(|| index.ask(black_box(&normalized), Detail::Outcome))
        });
    }
    group.finish();
    c.bench_function("faq_build", |b| b.iter(shipped));
}

criterion_group!(benches, bench_ask);
criterion_main!(benches);
