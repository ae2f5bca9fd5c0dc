//! The bundled example pipeline, run as the README's first command runs it.

use std::path::Path;

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

/// A copy of examples/pipeline (without any state) in a temp folder.
fn example() -> tempfile::TempDir {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "paths.json",
        "ingest.py",
        "retry_runner.py",
        "drive_upload.py",
        "watchdog.py",
    ] {
        std::fs::copy(
            manifest.join("examples/pipeline").join(name),
            dir.path().join(name),
        )
        .unwrap();
    }
    copy_tree(
        &manifest.join("examples/pipeline/Data"),
        &dir.path().join("Data"),
    );
    dir
}

/// `memsched --once --json` on the example with the shipped rules.
fn run_example(dir: &Path) -> std::process::Output {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("watch-rules.toml");
    std::process::Command::new(BIN)
        .args(["--paths", dir.join("paths.json").to_str().unwrap()])
        .args(["--rules", rules.to_str().unwrap(), "--once", "--json"])
        .output()
        .unwrap()
}

#[test]
fn the_example_pipeline_ingests_everything_then_has_nothing_to_do() {
    let dir = example();
    let run = || run_example(dir.path());
    let out = run();
    assert_exit(&out, 0);
    let ingest = action(&run_record(&out), "ingest").clone();
    assert_eq!(ingest["outcome"], "ran", "{ingest:#}");
    assert_eq!(ingest["counts"]["done"], 4);
    let indexed = std::fs::read_dir(dir.path().join("index")).unwrap().count();
    assert_eq!(indexed, 4);

    let out = run();
    assert_exit(&out, 0);
    assert_eq!(
        action(&run_record(&out), "ingest")["outcome"],
        "nothing-to-do"
    );
}

#[test]
fn a_full_run_repairs_a_seeded_failed_task_and_upload_and_ends_healthy() {
    let dir = example();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("task_queue.json"),
        r#"{"tasks": [{"id": "ingest:recipes.txt", "step": "ingest", "status": "failed", "attempts": 1,
            "priority": "high", "file": "recipes.txt", "created_at": "2026-11-25T10:00:00+00:00",
            "last_error": "embedding service unavailable"}]}"#,
    )
    .unwrap();
    std::fs::write(
        state.join("upload_log.json"),
        r#"{"uploads": [{"path": "Data/people.txt", "status": "failed", "attempts": 1, "error": "timeout"}]}"#,
    )
    .unwrap();
    let out = run_example(dir.path());
    assert_exit(&out, 0);
    let record = run_record(&out);
    for name in ["retry", "ingest", "upload", "watchdog"] {
        assert_eq!(action(&record, name)["outcome"], "ran", "{record:#}");
    }
    assert_eq!(action(&record, "retry")["counts"]["done"], 1);
    let health: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("watchdog_state.json")).unwrap())
            .unwrap();
    assert_eq!(health["status"], "ok", "{health:#}");
    assert_eq!(health["unindexed_files"], 0);
    // The seeded upload and the index (queued by `sources`) reached the stand-in drive.
    assert!(dir.path().join("drive/memory/Data/people.txt").is_file());
    let indexed = std::fs::read_dir(dir.path().join("drive/memory/index"))
        .unwrap()
        .count();
    assert_eq!(indexed, 4);
}
