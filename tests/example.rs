//! The bundled example pipeline, run as the README's first command runs it.

use std::path::Path;

use crate::harness::Run;
use crate::util::*;

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir(from) {
        let rel = entry.strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(&entry, &dest).unwrap();
            set_old(&dest);
        }
    }
}

fn walkdir(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let mut children: Vec<_> = std::fs::read_dir(&out[i])
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            children.sort();
            out.extend(children);
        }
        i += 1;
    }
    out
}

/// A home holding a copy of examples/pipeline (without any state): its paths.json, steps
/// and Data folder over the ones `TestEnv` made.
fn example() -> TestEnv {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let env = TestEnv::new();
    for name in [
        "paths.json",
        "ingest.py",
        "retry_runner.py",
        "drive_upload.py",
        "watchdog.py",
    ] {
        std::fs::copy(
            manifest.join("examples/pipeline").join(name),
            env.home().join(name),
        )
        .unwrap();
    }
    copy_tree(&manifest.join("examples/pipeline/Data"), &env.data());
    env
}

/// `memsched --once --json` on the example with the shipped rules; it must exit 0.
#[track_caller]
fn run_example(env: &TestEnv) -> Run<'_> {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pipeline/watch-rules.toml");
    env.test()
        .args(&["--rules", rules.to_str().unwrap(), "--once", "--json"])
        .run()
}

/// Issue 20 item 13: `cp -r examples/pipeline ~/memory` is a starter. Its rules sit beside
/// its paths.json, so a copy run from any other folder, with no `--rules`, finds them.
#[test]
fn the_example_copied_elsewhere_runs_from_another_folder_with_its_own_rules() {
    let env = TestEnv::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pipeline");
    let copy = env.home().join("memory");
    // What `git clone` gives: the tracked files, none of a previous run's output.
    for entry in walkdir(&example) {
        let rel = entry.strip_prefix(&example).unwrap();
        let top = rel.components().next().map(|c| c.as_os_str().to_owned());
        if top.is_some_and(|t| ["state", "index", "drive"].iter().any(|n| t == *n)) {
            continue;
        }
        if entry.is_dir() {
            std::fs::create_dir_all(copy.join(rel)).unwrap();
        } else {
            std::fs::copy(&entry, copy.join(rel)).unwrap();
            set_old(&copy.join(rel));
        }
    }
    let elsewhere = env.home().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = env
        .bare_command()
        .current_dir(&elsewhere)
        .arg("--paths")
        .arg(copy.join("paths.json"))
        .args(["--once", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ingest = action(&record, "ingest");
    assert_eq!(ingest["outcome"], "ran", "{record:#}");
    assert_eq!(ingest["counts"]["done"], 4);
    assert_eq!(std::fs::read_dir(copy.join("index")).unwrap().count(), 4);
}

#[test]
fn the_example_pipeline_ingests_everything_then_has_nothing_to_do() {
    let env = example();
    let ingest = run_example(&env).action("ingest");
    assert_eq!(ingest["outcome"], "ran", "{ingest:#}");
    assert_eq!(ingest["counts"]["done"], 4);
    let indexed = std::fs::read_dir(env.home().join("index")).unwrap().count();
    assert_eq!(indexed, 4);

    assert_eq!(
        run_example(&env).action("ingest")["outcome"],
        "nothing-to-do"
    );
}

#[test]
fn a_full_run_repairs_a_seeded_failed_task_and_upload_and_ends_healthy() {
    let env = example();
    env.write(
        "state/task_queue.json",
        r#"{"tasks": [{"id": "ingest:recipes.txt", "step": "ingest", "status": "failed", "attempts": 1,
            "priority": "high", "file": "recipes.txt", "created_at": "2026-11-25T10:00:00+00:00",
            "last_error": "embedding service unavailable"}]}"#,
    );
    env.write(
        "state/upload_log.json",
        r#"{"uploads": [{"path": "Data/people.txt", "status": "failed", "attempts": 1, "error": "timeout"}]}"#,
    );
    let record = run_example(&env).record();
    for name in ["retry", "ingest", "upload", "watchdog"] {
        assert_eq!(action(&record, name)["outcome"], "ran", "{record:#}");
    }
    assert_eq!(action(&record, "retry")["counts"]["done"], 1);
    let health = env.state_json("watchdog_state.json");
    assert_eq!(health["status"], "ok", "{health:#}");
    assert_eq!(health["unindexed_files"], 0);
    // The seeded upload and the index (queued by `sources`) reached the stand-in drive.
    assert!(env.home().join("drive/memory/Data/people.txt").is_file());
    let indexed = std::fs::read_dir(env.home().join("drive/memory/index"))
        .unwrap()
        .count();
    assert_eq!(indexed, 4);
}

/// Issue 9, case 7: a name that is not UTF-8 (`caf\xe9.txt`, Latin-1) in the bundled
/// example. The example leaves it out of its report (JSON cannot spell it) and memsched
/// reads a report that does spell it with a lone surrogate all the same: one odd name costs
/// at most its own file, never its batch.
#[test]
fn issue_9_a_name_that_is_not_utf8_costs_the_example_nothing() {
    use std::os::unix::ffi::OsStrExt;
    let env = example();
    env.data_file(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"), "un caf\u{e9}");
    let ingest = run_example(&env).action("ingest");
    assert_eq!(ingest["counts"]["done"], 5, "{ingest:#}");
    assert_eq!(
        run_example(&env).action("ingest")["outcome"],
        "nothing-to-do"
    );
}

/// Issue 9, case 7: a report whose one failed entry is spelt with a lone surrogate, as
/// Python's json writes a name that is not UTF-8: the other files' verdicts stand.
#[test]
fn issue_9_a_report_entry_json_cannot_spell_costs_only_its_file() {
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    let report = r#"{"done": ["a.txt", "b.txt"], "failed": [{"path": "caf\udce9.txt", "error": "not UTF-8"}]}"#;
    env.rules(&["--exit", "1", "--result", report, "--"], "");
    env.data_file("a.txt", "alpha");
    env.data_file("b.txt", "beta");
    env.data_file(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"), "latin");
    let ingest = env
        .test()
        .args(&["--once", "--json"])
        .status(1)
        .run()
        .action("ingest");
    assert_eq!(ingest["counts"]["done"], 2, "{ingest:#}");
    assert_eq!(ingest["counts"]["failed"], 1, "{ingest:#}");
}
