//! Engine overhead per step: 10,000 trivial steps (`sleep: { duration: 0s }`, which does no
//! I/O) through the real engine, in process, with no output. Also the loader (parse + check)
//! on the same runbook, for reference.
//!
//!     cargo bench --bench engine
//!
//! Per-step overhead = time per run / 10,000 (criterion prints the throughput in steps/s).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opsctl::engine::{Engine, NoTty, Options, RunMeta};
use opsctl::inventory::Inventory;
use opsctl::report::{Event, Sink};
use opsctl::runbook::{self, Runbook};
use opsctl::source::SourceFile;

const STEPS: usize = 10_000;

struct Null;
impl Sink for Null {
    fn event(&self, _: &Event<'_>) {}
}

fn runbook_text(templated: bool) -> String {
    let mut s = String::from("name: bench\nparams:\n  d: { type: duration, default: 0s }\nsteps:\n");
    for i in 0..STEPS {
        if templated {
            s.push_str(&format!("  - id: s{i}\n    sleep: {{ duration: \"{{{{ params.d }}}}\" }}\n"));
        } else {
            s.push_str(&format!("  - id: s{i}\n    sleep: {{ duration: 0s }}\n"));
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let inventory = Inventory::builtin();
    let instance = inventory.instance("localhost").unwrap();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(STEPS as u64));
    group.sample_size(20);
    for (label, templated) in [("10k_plain_steps", false), ("10k_templated_steps", true)] {
        let text = runbook_text(templated);
        let rb = Runbook::load(SourceFile::new("bench.yaml", text.clone())).unwrap();
        assert!(runbook::check::references(&rb, Some(&instance)).is_empty());
        let params = runbook::check::bind_params(&rb, &[]).unwrap();
        group.bench_function(format!("run/{label}"), |b| {
            b.iter(|| {
                let engine = Engine::new(
                    &rb,
                    instance.clone(),
                    params.clone(),
                    Options { parallel: 8, ..Options::default() },
                    RunMeta { run_id: "bench".into(), user: "bench".into(), host: "bench".into() },
                    &Null,
                    &NoTty,
                    Default::default(),
                );
                let report = rt.block_on(engine.run());
                assert_eq!(report.summary.passed, STEPS);
                report
            })
        });
        group.bench_function(format!("load_and_check/{label}"), |b| {
            b.iter(|| {
                let rb = Runbook::load(SourceFile::new("bench.yaml", text.clone())).unwrap();
                let errs = runbook::check::references(&rb, Some(&instance));
                (rb, errs)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
