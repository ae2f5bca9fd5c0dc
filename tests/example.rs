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

#[test]
fn the_example_pipeline_ingests_everything_then_has_nothing_to_do() {
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
    let run = || {
        std::process::Command::new(BIN)
            .args(["--paths", dir.path().join("paths.json").to_str().unwrap()])
            .args([
                "--rules",
                manifest.join("watch-rules.toml").to_str().unwrap(),
                "--once",
                "--json",
            ])
            .output()
            .unwrap()
    };
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
