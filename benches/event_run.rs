//! Benchmark: what recording one saved file costs the watcher in a home of 10 files and
//! in one of 100,000 (issue 8: "the same"). Each home is ingested once by a full run, then
//! one new file at a time is planned, sent (to `true`) and recorded by an event run that
//! is given the changed path, against the manifest held across runs, as the watcher does.
//! Also the full walk of the watcher's tick over the held manifest.
//!
//! `cargo bench --bench event_run [-- FILES...]` (default 10 100000)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use memsched::actions::ingest::WatcherHints;
use memsched::config::paths::Paths;
use memsched::config::rules::Rules;
use memsched::model::action::Action;
use memsched::model::trigger::Trigger;
use memsched::reconcile::{self, Request};
use memsched::state::ingest_hash::Held;

const SAVES: usize = 25;

fn main() {
    // RUST_LOG=memsched=debug shows where a run's time goes.
    env_logger::init();
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 100_000]
    } else {
        sizes
    };
    for n in sizes {
        measure(n);
    }
}

fn measure(n: usize) {
    let home = tempfile::tempdir().expect("a temporary folder");
    let home = home.path();
    build(home, n);
    let paths = Paths::load(&home.join("paths.json")).expect("paths.json loads");
    let rules = Rules::load(&home.join("watch-rules.toml")).expect("the rules load");
    let held = Held::default();
    let run = |changed: Option<Vec<PathBuf>>| {
        let request = Request {
            ingest_hints: WatcherHints {
                changed,
                manifest: held.clone(),
                ..WatcherHints::default()
            },
            ..Request::new(vec![Action::Ingest], Trigger::Event)
        };
        let began = Instant::now();
        let record = reconcile::run(&paths, &rules, &request);
        let took = began.elapsed();
        assert_eq!(record.exit_code, 0, "{:?}", record.actions[0].summary);
        (took, record.actions[0].summary.clone())
    };
    let (first, _) = run(None);
    let mut saves = Vec::new();
    for i in 0..SAVES {
        let file = home.join(format!("Data/saved-{i}.txt"));
        std::fs::write(&file, format!("a memory saved at step {i}")).expect("write");
        let (took, summary) = run(Some(vec![PathBuf::from(format!("saved-{i}.txt"))]));
        assert!(summary.starts_with("sent 1 file"), "{summary}");
        saves.push(took);
    }
    let (tick, _) = run(None);
    saves.sort();
    println!(
        "{n:>7} files: one saved file, event run: median {}, p90 {}  (first full run {}, tick's full walk + compaction {})",
        ms(saves[SAVES / 2]),
        ms(saves[SAVES * 9 / 10]),
        ms(first),
        ms(tick)
    );
}

fn build(home: &Path, n: usize) {
    let folders = (n / 100).max(1);
    for f in 0..folders {
        std::fs::create_dir_all(home.join(format!("Data/d{f:04}"))).expect("mkdir");
    }
    for i in 0..n {
        let path = home.join(format!("Data/d{:04}/m{i:06}.txt", i % folders));
        std::fs::write(path, format!("memory number {i}")).expect("write");
    }
    std::fs::write(
        home.join("paths.json"),
        r#"{"data_dir": "Data", "state_dir": "state"}"#,
    )
    .expect("write");
    std::fs::write(
        home.join("watch-rules.toml"),
        "[actions.ingest]\ncommand = [\"true\", \"{files}\"]\nbatch_size = 1000\nsettle = \"0s\"\n",
    )
    .expect("write");
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
