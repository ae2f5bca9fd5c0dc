//! The file an `ingest` task names, judged before its step runs: a task's `file` is written
//! by whoever can write the queue, so one that leads outside data_dir is refused (issue 18
//! item 3: `../../../../../etc/shadow` was indexed and uploaded), and one that is gone is
//! closed rather than retried to death (issue 21 item 5).

use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::model::file_key;

/// What to do with a task, judged by its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FileVerdict {
    /// Not an ingest task with a file, or its file is a file inside data_dir: run it.
    Run,
    /// The file leads outside data_dir (why): never run, the task is dead.
    Refuse(String),
    /// The file is gone from data_dir (why): nothing to redo, the task is closed as done.
    /// The next ingest run tells the remove step, and a moved file is new under its new
    /// name.
    Gone(String),
    /// data_dir itself cannot be resolved (why): the task fails this turn and is tried
    /// again later, as any failure.
    Unknown(String),
}

/// Judges the `file` of `task` (a task of step `ingest`) against `data_dir`.
#[must_use]
pub(super) fn judge(data_dir: &Path, task: &Value) -> FileVerdict {
    if task.get("step").and_then(Value::as_str) != Some("ingest") {
        return FileVerdict::Run;
    }
    let Some(file) = task.get("file").and_then(Value::as_str) else {
        return FileVerdict::Run;
    };
    let outside = |how: &str| {
        FileVerdict::Refuse(format!(
            "its file {file:?} may be outside data_dir {}: {how}; not run (a task's file is relative to data_dir and stays inside it)",
            data_dir.display()
        ))
    };
    // A name that is not UTF-8 is keyed as a NUL and the hex of its bytes.
    let Some(rel) = file_key::path(file) else {
        return outside("it is a NUL and hex that spell no name");
    };
    if rel.components().any(|c| c == Component::ParentDir) {
        return outside("it has a `..` component");
    }
    if file.is_empty() || rel.as_os_str().as_bytes().contains(&0) {
        return outside("it is empty or holds a NUL");
    }
    let joined = data_dir.join(&rel);
    if !joined.starts_with(data_dir) {
        return outside("it is an absolute path elsewhere");
    }
    let root = match data_dir.canonicalize() {
        Ok(root) => root,
        Err(e) => {
            return FileVerdict::Unknown(format!(
                "data_dir {} cannot be resolved ({e}), so its file {file:?} cannot be checked: not run",
                data_dir.display()
            ));
        }
    };
    match joined.canonicalize() {
        Ok(target) if target.starts_with(&root) => FileVerdict::Run,
        Ok(target) => outside(&format!(
            "it resolves through a link to {}",
            target.display()
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => gone(&joined, &root, file, &outside),
        Err(e) => outside(&format!("it cannot be resolved ({e})")),
    }
}

/// The verdict on a file that does not resolve: gone when nothing of it is left (no
/// dangling link) and what is left of its folders lies inside data_dir.
fn gone(
    joined: &Path,
    root: &Path,
    file: &str,
    outside: &dyn Fn(&str) -> FileVerdict,
) -> FileVerdict {
    if joined.symlink_metadata().is_ok() {
        return outside("it is a link that resolves to nothing");
    }
    let mut ancestor: PathBuf = joined.to_path_buf();
    while ancestor.pop() {
        if let Ok(real) = ancestor.canonicalize() {
            if !real.starts_with(root) {
                return outside(&format!(
                    "its folder resolves through a link to {}",
                    real.display()
                ));
            }
            break;
        }
    }
    FileVerdict::Gone(format!(
        "its file {file:?} is gone from data_dir (deleted, or its folder moved, since it failed): nothing to redo; closed as done without running (the next ingest run tells the remove step, and a moved file is ingested under its new name)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verdict(data: &Path, file: &str) -> FileVerdict {
        judge(data, &json!({"step": "ingest", "file": file}))
    }

    #[test]
    fn files_inside_data_dir_run_and_the_rest_are_refused_or_closed() {
        let home = tempfile::tempdir().unwrap();
        let data = home.path().join("Data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("sub/a.txt"), "a").unwrap();
        std::fs::write(home.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(home.path(), data.join("up")).unwrap();
        std::os::unix::fs::symlink("sub", data.join("inside")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", data.join("dangling")).unwrap();
        let abs_inside = data.join("sub/a.txt");
        std::fs::write(data.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")), "c").unwrap();
        let table: [(&str, &str); 15] = [
            ("\x00636166e92e747874", "run"),
            ("\x00zz", "refuse"),
            ("\x002e2e2f736563726574", "refuse"),
            ("sub/a.txt", "run"),
            ("./sub/a.txt", "run"),
            ("inside/a.txt", "run"),
            (abs_inside.to_str().unwrap(), "run"),
            ("../secret", "refuse"),
            ("sub/../sub/a.txt", "refuse"),
            ("/etc/passwd", "refuse"),
            ("up/secret", "refuse"),
            ("up/not-there/x.txt", "refuse"),
            ("dangling", "refuse"),
            ("gone.txt", "gone"),
            ("sub/moved/away.txt", "gone"),
        ];
        for (file, want) in table {
            let got = match verdict(&data, file) {
                FileVerdict::Run => "run",
                FileVerdict::Refuse(_) => "refuse",
                FileVerdict::Gone(_) => "gone",
                FileVerdict::Unknown(_) => "unknown",
            };
            assert_eq!(got, want, "{file}");
        }
        let other = judge(&data, &json!({"step": "upload", "file": "../x"}));
        assert_eq!(other, FileVerdict::Run, "only ingest tasks name data files");
        assert!(matches!(
            verdict(&home.path().join("NoData"), "a.txt"),
            FileVerdict::Unknown(_)
        ));
    }
}
