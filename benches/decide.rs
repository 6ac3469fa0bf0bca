//! The whole decision for one text message (normalize, rules, FAQ, default) with the shipped
//! rules, as the message grows: 12, 120 and 1,200 characters; as a push asks for it (the outcome
//! alone) and as a tool does (explained).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

use kefu::dispatch::trial::text_message;
use kefu::dispatch::{Context, decide};
use kefu::faq::FaqSettings;
use kefu::rules::RuleSet;
use kefu::store::Session;

fn bench(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let Some(set) = RuleSet::load_dir(&dir, &FaqSettings::default()).set else {
        panic!("the shipped rules load");
    };
    // A Tuesday 10:00 in Shanghai: no after-hours rule applies.
    let ctx = Context::at_unix(
        1_795_000_000 - (1_795_000_000 % 604_800) + 4 * 86_400 + 2 * 3600,
        chrono_tz::Asia::Shanghai,
        30,
        600,
    );
    let base = "请问个体户怎么注销小程序，";
    let mut group = c.benchmark_group("decide");
    for repeat in [1usize, 10, 100] {
        let text = base.repeat(repeat);
        let chars = text.chars().count();
        let msg = text_message("o_bench", &text, 1_795_000_000);
        // A push: the outcome alone.
        group.bench_with_input(BenchmarkId::new("chars", chars), &msg, |b, msg| {
            b.iter(|| black_box(decide(&set, black_box(msg), &Session::default(), &ctx)))
        });
        // A tool (`kefu try`, the console): the outcome with why and the candidates.
        let explained = ctx.explained();
        group.bench_with_input(BenchmarkId::new("explained", chars), &msg, |b, msg| {
            b.iter(|| {
                black_box(decide(
                    &set,
                    black_box(msg),
                    &Session::default(),
                    &explained,
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
