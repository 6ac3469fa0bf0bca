//! How the rules engine scales: the time to decide one message against 10 … 100,000 generated
//! rules (the decision must not grow with the number of rules), and the time to load, compile
//! and swap in 10,000 rules.
//!
//! The rules are a realistic mix: keyword rules with 1–3 keywords of 3–4 CJK characters, and one
//! regex rule in a hundred. Two messages: one that hits exactly one rule, one that hits none
//! (its filler characters are never used in a keyword).

use std::hint::black_box;
use std::path::Path;

use chrono::TimeZone;
use chrono_tz::Asia::Shanghai;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};

use kefu::faq::FaqSettings;
use kefu::rules::{MatchInput, RuleSet, RulesHandle, SourceFile};
use kefu::text::normalize;

/// Characters keywords are made of.
const KEYWORD_CHARS: &str = "账号注销小程序公众平台认证主体资质个体工商户企业政府机构管理员微信支付商户退款订单物流发货地址修改绑定解绑手机邮箱密码登录冻结解冻申诉违规处罚审核版本发布上线开发者权限成员模板消息客服接口插件直播视频号广告流量主收入结算发票对公打款验证法人扫脸授权迁移名称头像简介类目服务范围标签搜索排名附近门店卡券会员积分优惠活动";

/// Characters of the messages' filler: never in a keyword.
const FILLER: &str = "请问一下我想知道这个怎么办呢谢谢你们好吗";

/// A small deterministic generator (no dependency on a random source).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A keyword unique to rule `i`, keyword `k`: 3–4 characters, the first three spelling `i` and `k`
/// so that no two rules share one.
fn keyword(chars: &[char], rng: &mut Lcg, i: usize, k: usize) -> String {
    let base = chars.len();
    let mut n = i * 3 + k;
    let mut word = String::new();
    // Three characters spell up to base³ (≈ 2.7 million) distinct ids.
    for _ in 0..3 {
        word.push(chars[n % base]);
        n /= base;
    }
    if rng.below(2) == 0 {
        word.push(chars[rng.below(base)]);
    }
    word
}

/// `n` rules as YAML files of at most 1,000 rules each, and the keyword of rule `n / 2`.
fn generate(n: usize) -> (Vec<SourceFile>, String) {
    let mut chars: Vec<char> = KEYWORD_CHARS
        .chars()
        .filter(|c| !FILLER.contains(*c))
        .collect();
    chars.sort_unstable();
    chars.dedup();
    let mut rng = Lcg(42);
    let mut files = Vec::new();
    let mut text = String::from("rules:\n");
    let mut target = String::new();
    for i in 0..n {
        if i % 100 == 99 {
            let word = keyword(&chars, &mut rng, i, 0);
            text.push_str(&format!(
                "  - id: r{i}\n    regex: '{word}号\\s*[:：]?\\s*(?P<n>\\d{{6,12}})'\n    reply: 已收到 {{n}}\n"
            ));
        } else {
            let count = 1 + rng.below(3);
            let words: Vec<String> = (0..count)
                .map(|k| keyword(&chars, &mut rng, i, k))
                .collect();
            if i == n / 2 {
                target = words[0].clone();
            }
            text.push_str(&format!(
                "  - id: r{i}\n    keywords: [{}]\n    reply: 回复 {i}\n",
                words.join(", ")
            ));
        }
        if (i + 1) % 1000 == 0 || i + 1 == n {
            files.push(SourceFile {
                path: format!("rules/{:04}.yaml", files.len()).into(),
                text: std::mem::replace(&mut text, String::from("rules:\n")),
            });
        }
    }
    (files, target)
}

fn load(files: &[SourceFile]) -> RuleSet {
    let report = RuleSet::load_files(Path::new("rules"), files, &FaqSettings::default());
    let errors: Vec<String> = report
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .take(5)
        .map(|d| d.to_string())
        .collect();
    report
        .set
        .unwrap_or_else(|| panic!("generated rules refused: {errors:#?}"))
}

fn decide(c: &mut Criterion) {
    let now = Shanghai
        .with_ymd_and_hms(2026, 3, 2, 10, 0, 0)
        .single()
        .expect("a valid instant");
    let filler: Vec<char> = FILLER.chars().collect();
    let mut group = c.benchmark_group("decide");
    for n in [10usize, 1_000, 10_000, 100_000] {
        let (files, target) = generate(n);
        let set = load(&files);
        let head: String = filler[..6].iter().collect();
        let tail: String = filler[6..12].iter().collect();
        let hit = normalize(&format!("{head}{target}{tail}"));
        let miss = normalize(&format!("{head}{tail}{head}"));
        fn input(text: &str, now: chrono::DateTime<chrono_tz::Tz>) -> MatchInput<'_> {
            MatchInput {
                msg_type: "text",
                event: None,
                event_key: None,
                text,
                now,
            }
        }
        let expected = format!("r{}", n / 2);
        assert_eq!(
            set.match_message(&input(&hit, now))
                .map(|h| h.rule.id.clone()),
            Some(expected),
            "the hit message must hit rule n/2"
        );
        assert!(set.match_message(&input(&miss, now)).is_none());
        group.bench_with_input(BenchmarkId::new("hit", n), &hit, |b, text| {
            b.iter(|| set.match_message(black_box(&input(text, now))).is_some())
        });
        group.bench_with_input(BenchmarkId::new("miss", n), &miss, |b, text| {
            b.iter(|| set.match_message(black_box(&input(text, now))).is_some())
        });
    }
    group.finish();
}

fn reload(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (files, _) = generate(10_000);
    for file in &files {
        let path = dir.path().join(file.path.file_name().expect("a file name"));
        std::fs::write(path, &file.text).expect("write a rules file");
    }
    let (handle, _) = RulesHandle::load(dir.path(), FaqSettings::default()).expect("loads");
    let toggle = dir.path().join("9999-toggle.yaml");
    let mut flip = false;
    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    group.bench_function("load_compile_swap_10000", |b| {
        b.iter_batched(
            || {
                // A real change each time, so that the reload is not `Unchanged`.
                flip = !flip;
                let text = format!(
                    "rules:\n  - id: toggle\n    keywords: [切换{}]\n    reply: x\n",
                    u8::from(flip)
                );
                std::fs::write(&toggle, text).expect("write the toggle file");
            },
            |()| {
                let outcome = handle.reload();
                assert_eq!(outcome.label(), "swapped");
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, decide, reload);
criterion_main!(benches);
