//! The FAISS reference pipeline (examples/faiss) kept in step with its Data folder by the
//! real binary and real FAISS (issue 17): save, edit, delete, rename and undo, restore,
//! and a vanished Data folder, each checked through the example's own search.
//!
//! Needs the example's virtual environment (`.ci/run` makes it): its Python is
//! `MEMSCHED_FAISS_PYTHON`, else examples/faiss/.venv/bin/python. Without it the test
//! fails under CI (`CI` set) and is skipped, saying so, on a developer's machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::util::*;

/// The Python of the FAISS virtual environment, if there is one.
fn faiss_python() -> Option<PathBuf> {
    let python = std::env::var_os("MEMSCHED_FAISS_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/faiss/.venv/bin/python"),
        PathBuf::from,
    );
    let works = Command::new(&python)
        .args(["-c", "import faiss, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{}: no Python with faiss-cpu and numpy; run .ci/run, or \
         python3 -m venv examples/faiss/.venv && examples/faiss/.venv/bin/pip install -r examples/faiss/requirements.txt",
        python.display()
    );
    eprintln!(
        "skipped: {} has no faiss (see tests/faiss.rs)",
        python.display()
    );
    None
}

/// A home holding the example's scripts, rules and rclone.conf (no Data: the test writes
/// its own memories), with `.venv` linked to the environment that has FAISS.
fn faiss_home(python: &Path) -> TestEnv {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/faiss");
    let env = TestEnv::new();
    for entry in std::fs::read_dir(&example).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, env.home().join(path.file_name().unwrap())).unwrap();
        }
    }
    let venv = python.parent().unwrap().parent().unwrap();
    std::os::unix::fs::symlink(venv, env.home().join(".venv")).unwrap();
    env
}

fn once(env: &TestEnv) -> std::process::Output {
    let rules = env.home().join("watch-rules.toml");
    env.run(&["--rules", rules.to_str().unwrap(), "--once", "--json"])
}

fn memory(env: &TestEnv, rel: &str, text: &str) -> PathBuf {
    let path = env.write(&format!("Data/{rel}"), text);
    set_old(&path);
    path
}

/// The files (relative to Data) whose chunks the example's search.py returns for `query`.
fn found(env: &TestEnv, python: &Path, query: &str) -> Vec<String> {
    let out = Command::new(python)
        .current_dir(env.home())
        .args(["search.py", query, "-k", "10", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "search.py: {}", stderr(&out));
    let hits: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    hits.iter()
        .filter(|h| h["text"].as_str().unwrap_or_default().contains(query))
        .map(|h| h["path"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn issue_17_the_faiss_index_mirrors_the_data_folder() {
    let Some(python) = faiss_python() else {
        return;
    };
    let env = faiss_home(&python);
    memory(&env, "cabin.txt", "the cabin wifi password is hunter2");
    memory(&env, "milk.txt", "remember to buy oat milk on friday");
    let out = once(&env);
    assert_exit(&out, 0);
    // Save → found by search.
    assert_eq!(found(&env, &python, "hunter2"), ["cabin.txt"]);
    // The index went to the drive through rclone's local backend.
    assert!(
        env.home().join("drive/index/faiss.index").is_file(),
        "{}",
        stdout(&out)
    );

    // Edit → the old text is gone, the new is found.
    memory(
        &env,
        "cabin.txt",
        "the cabin wifi password is now correcthorse, changed in december",
    );
    assert_exit(&once(&env), 0);
    assert_eq!(found(&env, &python, "hunter2"), Vec::<String>::new());
    assert_eq!(found(&env, &python, "correcthorse"), ["cabin.txt"]);

    // Delete → not found.
    std::fs::remove_file(env.data().join("cabin.txt")).unwrap();
    assert_exit(&once(&env), 0);
    assert_eq!(found(&env, &python, "correcthorse"), Vec::<String>::new());

    // Rename and undo → found once, under the right path each time.
    std::fs::create_dir(env.data().join("g")).unwrap();
    std::fs::rename(env.data().join("milk.txt"), env.data().join("g/m.txt")).unwrap();
    assert_exit(&once(&env), 0);
    assert_eq!(found(&env, &python, "oat milk"), ["g/m.txt"]);
    std::fs::rename(env.data().join("g/m.txt"), env.data().join("milk.txt")).unwrap();
    assert_exit(&once(&env), 0);
    assert_eq!(found(&env, &python, "oat milk"), ["milk.txt"]);

    // Restore after delete → found.
    memory(
        &env,
        "cabin.txt",
        "the cabin wifi password is now correcthorse, changed in december",
    );
    assert_exit(&once(&env), 0);
    assert_eq!(found(&env, &python, "correcthorse"), ["cabin.txt"]);

    // rm -rf Data → nothing removed from the index, health degraded.
    std::fs::remove_dir_all(env.data()).unwrap();
    assert_exit(&once(&env), 1);
    assert_eq!(found(&env, &python, "correcthorse"), ["cabin.txt"]);
    assert_eq!(found(&env, &python, "oat milk"), ["milk.txt"]);
    let status = env.run(&["status", "--json"]);
    let health: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_ne!(health["status"], "ok", "{health:#}");
}
