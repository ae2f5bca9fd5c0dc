//! The resident runner against small `python3` steps: kept between batches, fresh after a
//! timeout or a wrong answer, EOF on close.

use std::os::unix::ffi::OsStrExt;

use super::*;
use crate::os::lock;

/// A step that answers every batch with its pid in `done`, after sleeping as long as
/// the first file's name says (`sleep-1.5`), and exits at EOF.
const STEP: &str = r#"
import json, os, sys, time
for line in sys.stdin:
    req = json.loads(line)
    files = req.get("files", [])
    if files and os.path.basename(files[0]).startswith("sleep-"):
        time.sleep(float(os.path.basename(files[0])[6:]))
    if files and os.path.basename(files[0]) == "wrong-id":
        print(json.dumps({"id": req["id"] + 1000}), flush=True)
        continue
    print(json.dumps({"id": req["id"], "done": [str(os.getpid())]}), flush=True)
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    spec: Spec,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        argv: vec!["python3".into(), "-c".into(), STEP.into()],
        cwd: dir.path().to_path_buf(),
        env: Vec::new(),
        lock: dir.path().join("ingest.lock"),
        idle_exit: None,
        scripts: Vec::new(),
    };
    Fixture { _dir: dir, spec }
}

/// Serves one batch whose first file is `name` under a lease; the pid the step says.
fn batch(spec: &Spec, name: &str, timeout: Duration) -> (Served, Option<String>) {
    let _lease = lease(&spec.lock, std::slice::from_ref(&spec.argv), || {
        lock::try_acquire(&spec.lock)
    })
    .unwrap();
    let id = next_id();
    let file = PathBuf::from(name);
    let served = serve(
        spec,
        "ingest",
        id,
        request_line(id, "files", &[&file]),
        timeout,
    )
    .unwrap();
    let pid = match &served.answer {
        Answer::Line(line) => {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            Some(v["done"][0].as_str().unwrap().to_owned())
        }
        _ => None,
    };
    (served, pid)
}

#[test]
fn one_process_serves_batch_after_batch_and_holds_the_lock_between() {
    let f = fixture();
    let (_, first) = batch(&f.spec, "a.txt", Duration::from_secs(20));
    assert!(
        matches!(lock::try_acquire(&f.spec.lock), Err(Error::LockHeld { .. })),
        "the lock is held while the step lives"
    );
    let (served, second) = batch(&f.spec, "b.txt", Duration::from_secs(20));
    assert!(first.is_some());
    assert_eq!(first, second, "{served:?}");
    assert_eq!(served.report.exit_code, Some(0));
    release(&f.spec.lock);
    assert!(
        lock::try_acquire(&f.spec.lock).is_ok(),
        "released once closed"
    );
}

#[test]
fn a_timeout_ends_the_step_and_the_next_batch_starts_a_fresh_one() {
    let f = fixture();
    let (_, first) = batch(&f.spec, "a.txt", Duration::from_secs(20));
    let (served, none) = batch(&f.spec, "sleep-30", Duration::from_millis(300));
    assert!(none.is_none());
    assert!(served.report.timed_out);
    assert!(matches!(&served.answer, Answer::None(why) if why.contains("timed out")));
    let (_, fresh) = batch(&f.spec, "c.txt", Duration::from_secs(20));
    assert!(fresh.is_some());
    assert_ne!(first, fresh);
    release(&f.spec.lock);
}

#[test]
fn an_answer_for_another_batch_is_wrong_and_the_step_starts_afresh() {
    let f = fixture();
    let (_, first) = batch(&f.spec, "a.txt", Duration::from_secs(20));
    let (served, _) = batch(&f.spec, "wrong-id", Duration::from_secs(20));
    assert!(
        matches!(&served.answer, Answer::Wrong(why) if why.contains("for id")),
        "{served:?}"
    );
    let (_, fresh) = batch(&f.spec, "c.txt", Duration::from_secs(20));
    assert_ne!(first, fresh);
    release(&f.spec.lock);
}

#[test]
fn a_step_that_cannot_start_is_an_error_naming_it() {
    let mut f = fixture();
    f.spec.argv = vec!["/nonexistent/step".into()];
    let _lease = lease(&f.spec.lock, &[], || lock::try_acquire(&f.spec.lock)).unwrap();
    let e = serve(
        &f.spec,
        "ingest",
        1,
        b"{}\n".to_vec(),
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/step"), "{e}");
}

#[test]
fn names_json_cannot_spell_go_as_lone_surrogates() {
    let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"/d/caf\xe9 \"q\".txt"));
    let line = request_line(7, "remove", &[&odd, Path::new("/d/b.txt")]);
    assert_eq!(
        String::from_utf8(line).unwrap(),
        "{\"id\": 7, \"remove\": [\"/d/caf\\udce9 \\\"q\\\".txt\", \"/d/b.txt\"]}\n"
    );
}

#[test]
fn restarts_pause_longer_as_deaths_repeat() {
    assert_eq!(restart_pause(0), Duration::ZERO);
    assert_eq!(restart_pause(1), Duration::ZERO);
    assert_eq!(restart_pause(2), Duration::from_millis(500));
    assert_eq!(restart_pause(3), Duration::from_secs(1));
    assert_eq!(restart_pause(40), MAX_RESTART_PAUSE);
}

#[test]
fn an_answer_is_known_by_its_id_whatever_names_it_holds() {
    let line = |text: &str| Line::Text(text.as_bytes().to_vec());
    assert!(matches!(
        read_answer(3, line(r#"{"id": 3, "done": ["caf\udce9.txt"]}"#)),
        Answer::Line(_)
    ));
    assert!(matches!(
        read_answer(3, line(r#"{"done": []}"#)),
        Answer::Wrong(why) if why.contains("for id none")
    ));
    assert!(matches!(
        read_answer(3, line("loading model...")),
        Answer::Wrong(why) if why.contains("no JSON object")
    ));
    assert!(matches!(read_answer(3, Line::TooLong), Answer::Wrong(_)));
}
