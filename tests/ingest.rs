//! The ingest action end to end: plan, batches, placeholders, partial results, failures.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use pretty_assertions::assert_eq;

use crate::util::*;

#[test]
fn new_files_reach_the_step_once_and_a_second_run_has_nothing_to_do() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let a = env.data_file("a.txt", "alpha");
    let b = env.data_file("notes/b.txt", "beta");
    env.data_file("notes/ignored.md", "not a memory");
    env.data_file("notes/.hidden.txt", "hidden");
    env.data_file("notes/draft.txt~", "backup");

    let out = env.run(&["--once", "--mode", "ingest"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("ingest    ran"), "{}", stdout(&out));
    assert_eq!(env.sent(), [bytes(&a), bytes(&b)]);

    let hashes = env.state_json("ingest_hash.json");
    let files = hashes["files"].as_object().unwrap();
    assert_eq!(files.keys().collect::<Vec<_>>(), ["a.txt", "notes/b.txt"]);
    assert!(
        files["a.txt"]["hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    let out = env.run(&["--once", "--mode", "ingest", "--json"]);
    assert_exit(&out, 0);
    let ingest = action(&run_record(&out), "ingest").clone();
    assert_eq!(ingest["outcome"], "nothing-to-do");
    assert_eq!(ingest["counts"]["hashed"], 0);
    assert_eq!(ingest["counts"]["unchanged"], 2);
    assert_eq!(
        env.calls().len(),
        1,
        "the second run must not call the step"
    );
}

#[test]
fn odd_file_names_reach_the_step_byte_for_byte() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let names: Vec<OsString> = vec![
        "with space.txt".into(),
        "quote's \"double\".txt".into(),
        "new\nline.txt".into(),
        OsString::from_vec(b"latin1-\xe9t\xe9.txt".to_vec()),
        "-dash-first.txt".into(),
        "ünïcödé ✓.txt".into(),
    ];
    let mut expected: Vec<Vec<u8>> = names
        .iter()
        .map(|n| env.data_file(n, &format!("{n:?}")))
        .map(|p| bytes(&p))
        .collect();
    expected.sort();

    let out = env.run(&["--once", "--mode", "ingest"]);
    assert_exit(&out, 0);
    let mut sent = env.sent();
    sent.sort();
    assert_eq!(sent, expected);

    // Every name, the non-UTF-8 one included, is recorded and so not sent again.
    assert_eq!(
        env.state_json("ingest_hash.json")["files"]
            .as_object()
            .unwrap()
            .len(),
        names.len()
    );
    assert_exit(&env.run(&["--once", "--mode", "ingest"]), 0);
    assert_eq!(env.calls().len(), 1);
}

#[test]
fn files_can_be_passed_on_stdin_by_line_or_nul_or_in_a_list_file() {
    for (mode, sep) in [("stdin-lines", b'\n'), ("stdin-nul", 0)] {
        let env = TestEnv::new();
        env.rules(&[], &format!("pass_files = \"{mode}\"\n"));
        let a = env.data_file("a.txt", "a");
        let b = env.data_file("b c.txt", "b");
        assert_exit(&env.run(&["--once"]), 0);
        let calls = env.calls();
        assert_eq!(calls.len(), 1, "{mode}");
        let mut want = Vec::new();
        for p in [&a, &b] {
            want.extend(bytes(p));
            want.push(sep);
        }
        assert_eq!(calls[0].stdin, want, "{mode}");
        assert!(calls[0].args.is_empty(), "{mode}");
    }

    let env = TestEnv::new();
    env.rules(&["--", "{list}"], "pass_files = \"list-file\"\n");
    env.data_file("a.txt", "a");
    assert_exit(&env.run(&["--once"]), 0);
    let list_arg = String::from_utf8(env.calls()[0].args[0].clone()).unwrap();
    assert!(list_arg.ends_with("files.txt"), "{list_arg}");
}

#[test]
fn batches_respect_batch_size() {
    let env = TestEnv::new();
    env.rules(&["--"], "batch_size = 2\n");
    for i in 0..5 {
        env.data_file(format!("f{i}.txt"), &format!("content {i}"));
    }
    let out = env.run(&["--once", "--json"]);
    assert_exit(&out, 0);
    let sizes: Vec<usize> = env.calls().iter().map(|c| c.args.len()).collect();
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(action(&run_record(&out), "ingest")["counts"]["batches"], 3);
}

#[test]
fn the_step_gets_its_environment_and_runs_in_the_pipeline_home() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "a");
    assert_exit(&env.run(&["--once"]), 0);
    let call = &env.calls()[0];
    assert_eq!(
        call.cwd.canonicalize().unwrap(),
        env.home().canonicalize().unwrap()
    );
    assert_eq!(call.env["MEMSCHED_ACTION"], "ingest");
    assert_eq!(call.env["MEMSCHED_DATA_DIR"], env.data().to_str().unwrap());
    assert_eq!(
        call.env["MEMSCHED_STATE_DIR"],
        env.home().join("state").to_str().unwrap()
    );
    assert!(
        call.env["MEMSCHED_RESULT"]
            .as_str()
            .unwrap()
            .ends_with("result.json")
    );
}

#[test]
fn a_failing_step_queues_every_file_as_a_failed_task_and_records_none() {
    let env = TestEnv::new();
    env.rules(&["--exit", "3", "--"], "");
    let a = env.data_file("a.txt", "alpha");
    env.data_file("b.txt", "beta");

    let out = env.run(&["--once", "--mode", "ingest"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("0 done, 2 failed"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("failed a.txt: exit 3: record.py: exiting 3"),
        "{}",
        stdout(&out)
    );
    assert!(
        !env.state("ingest_hash.json").exists(),
        "nothing may be recorded as ingested"
    );

    let queue = env.state_json("task_queue.json");
    let tasks = queue["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    let task = &tasks[0];
    assert_eq!(task["id"], "ingest:a.txt");
    assert_eq!(task["step"], "ingest");
    assert_eq!(task["status"], "failed");
    assert_eq!(task["attempts"], 1);
    assert_eq!(task["file"], "a.txt");
    assert!(task["last_error"].as_str().unwrap().contains("exit 3"));
    // The task's command re-runs just that file.
    let command = task["command"].as_array().unwrap();
    assert_eq!(command.last().unwrap(), a.to_str().unwrap());

    // The next run leaves them to the retry action instead of sending them again.
    let out = env.run(&["--once", "--mode", "ingest", "--json"]);
    assert_exit(&out, 0);
    let ingest = action(&run_record(&out), "ingest").clone();
    assert_eq!(ingest["counts"]["awaiting_retry"], 2, "{ingest:#}");
    assert_eq!(env.calls().len(), 1);

    // Changing a failed file sends it again; success closes its task.
    env.rules(&["--"], "");
    env.data_file("a.txt", "alpha, fixed");
    assert_exit(&env.run(&["--once", "--mode", "ingest"]), 0);
    assert_eq!(env.calls().last().unwrap().args, [bytes(&a)]);
    let queue = env.state_json("task_queue.json");
    assert_eq!(queue["tasks"][0]["status"], "done");
    assert_eq!(queue["tasks"][1]["status"], "failed");
}

#[test]
fn partial_success_records_what_the_step_finished_and_queues_the_rest() {
    let env = TestEnv::new();
    env.rules(&["--fail", "bad", "--"], "");
    env.data_file("good.txt", "fine");
    env.data_file("bad one.txt", "broken");
    env.data_file("also good.txt", "fine too");

    let out = env.run(&["--once", "--mode", "ingest"]);
    assert_exit(&out, 1);
    let files = env.state_json("ingest_hash.json")["files"].clone();
    let mut recorded: Vec<&String> = files.as_object().unwrap().keys().collect();
    recorded.sort();
    assert_eq!(recorded, ["also good.txt", "good.txt"]);
    let tasks = env.state_json("task_queue.json")["tasks"].clone();
    assert_eq!(tasks.as_array().unwrap().len(), 1);
    assert_eq!(tasks[0]["file"], "bad one.txt");
    assert_eq!(tasks[0]["last_error"], "refused bad one.txt");
}

#[test]
fn a_malformed_result_file_records_nothing_and_fails_the_action() {
    let env = TestEnv::new();
    env.rules(&["--bad-result", "--"], "");
    env.data_file("a.txt", "a");
    let out = env.run(&["--once", "--mode", "ingest"]);
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("MEMSCHED_RESULT"), "{}", stdout(&out));
    assert!(!env.state("task_queue.json").exists());
    // Nothing was recorded, so the next run sends the file again.
    env.rules(&["--"], "");
    assert_exit(&env.run(&["--once"]), 0);
    assert_eq!(env.calls().len(), 2);
}

#[test]
fn a_step_that_times_out_is_killed_and_its_files_queued() {
    let env = TestEnv::new();
    env.rules(&["--sleep", "30", "--"], "timeout = \"500ms\"\n");
    env.data_file("a.txt", "a");
    let started = std::time::Instant::now();
    let out = env.run(&["--once", "--json"]);
    assert_exit(&out, 1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the step was not killed"
    );
    let ingest = action(&run_record(&out), "ingest").clone();
    assert_eq!(ingest["commands"][0]["timed_out"], true);
    let tasks = env.state_json("task_queue.json")["tasks"].clone();
    assert!(
        tasks[0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("timed out"),
        "{tasks:#}"
    );
}

#[test]
fn modified_files_are_sent_again_and_touched_or_copied_ones_are_not() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let a = env.data_file("a.txt", "alpha");
    env.data_file("b.txt", "beta");
    assert_exit(&env.run(&["--once"]), 0);

    env.data_file("a.txt", "alpha, edited"); // modified: sent
    std::fs::write(env.data().join("b.txt"), "beta").unwrap(); // rewritten, same content
    crate::util::set_old(&env.data().join("b.txt"));
    env.data_file("copy of b.txt", "beta"); // known content under a new name
    env.data_file("twin1.txt", "same new text");
    let twin2 = env.data_file("twin2.txt", "same new text");

    let out = env.run(&["--once", "--json"]);
    assert_exit(&out, 0);
    let sent: Vec<Vec<u8>> = env.calls()[1].args.clone();
    assert_eq!(sent, [bytes(&a), bytes(&env.data().join("twin1.txt"))]);
    let ingest = action(&run_record(&out), "ingest").clone();
    assert_eq!(ingest["counts"]["modified"], 1);
    assert_eq!(ingest["counts"]["known_content"], 3, "{ingest:#}");
    let files = env.state_json("ingest_hash.json")["files"].clone();
    assert_eq!(files["copy of b.txt"]["hash"], files["b.txt"]["hash"]);
    assert_eq!(files["twin2.txt"]["hash"], files["twin1.txt"]["hash"]);
    assert!(twin2.exists());

    // Everything is now recorded: a third run reads nothing.
    let out = env.run(&["--once", "--json"]);
    assert_eq!(action(&run_record(&out), "ingest")["counts"]["hashed"], 0);
}

#[test]
fn files_still_being_written_wait_for_the_settle_time() {
    let env = TestEnv::new();
    env.rules(&["--"], "settle = \"1h\"\n");
    env.write("Data/fresh.txt", "just written");
    let out = env.run(&["--once", "--json"]);
    assert_exit(&out, 0);
    let ingest = action(&run_record(&out), "ingest").clone();
    assert_eq!(ingest["counts"]["deferred"], 1);
    assert!(
        ingest["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("wait fresh.txt: modified"),
        "{ingest:#}"
    );
    assert!(env.calls().is_empty());
}

#[test]
fn removed_files_are_reported_and_their_records_kept() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    let a = env.data_file("a.txt", "a");
    assert_exit(&env.run(&["--once"]), 0);
    std::fs::remove_file(&a).unwrap();
    let out = env.run(&["--once", "--json"]);
    assert_exit(&out, 0);
    let ingest = action(&run_record(&out), "ingest").clone();
    assert_eq!(ingest["counts"]["removed"], 1);
    assert!(env.state_json("ingest_hash.json")["files"]["a.txt"].is_object());
}

#[test]
fn dry_run_plans_but_runs_and_writes_nothing() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    env.data_file("a.txt", "a");
    let out = env.run(&["--once", "--dry-run"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("would send 1 file in 1 batch"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("send a.txt: content not yet ingested"),
        "{}",
        stdout(&out)
    );
    assert!(env.calls().is_empty());
    assert!(
        !env.home().join("state").exists(),
        "a dry run must not create the state folder"
    );
}

#[test]
fn a_step_that_cannot_start_fails_the_action_and_queues_nothing() {
    let env = TestEnv::new();
    env.write(
        "watch-rules.toml",
        "[actions.ingest]\ncommand = [\"/nonexistent/ingest\", \"{files}\"]\nsettle = \"0s\"\n",
    );
    env.data_file("a.txt", "a");
    let out = env.run(&["--once"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("cannot start /nonexistent/ingest"),
        "{}",
        stdout(&out)
    );
    assert!(!env.state("task_queue.json").exists());
}

#[test]
fn sigterm_during_a_one_shot_run_lets_the_step_finish_and_starts_no_other() {
    let env = TestEnv::new();
    env.rules(&["--sleep", "2", "--"], "batch_size = 1\n");
    env.data_file("a.txt", "a");
    env.data_file("b.txt", "b");
    let child = env
        .command(&["--once", "--mode", "ingest", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        "the first batch starts",
        std::time::Duration::from_secs(20),
        &String::new,
        || !env.calls().is_empty(),
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(env.calls().len(), 1, "the second batch must not start");
    let files = env.state_json("ingest_hash.json")["files"].clone();
    assert_eq!(
        files.as_object().unwrap().len(),
        1,
        "the finished batch is recorded"
    );
    let ingest = action(&run_record(&out), "ingest").clone();
    assert!(
        ingest["reasons"]
            .to_string()
            .contains("stopped after 1 of 2 batches"),
        "{ingest:#}"
    );
}
