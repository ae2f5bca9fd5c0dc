//! Batches of files passed as arguments stay within the kernel's argument limit (issue 8):
//! split by bytes as xargs does, `batch_size` the upper bound on files, and a name too long
//! for any batch is an error for that file alone.

use std::collections::HashSet;

use serde_json::Value;

use crate::util::*;

/// `getconf ARG_MAX`: the bytes of arguments and environment `execve` accepts.
fn arg_max() -> usize {
    let out = std::process::Command::new("getconf")
        .arg("ARG_MAX")
        .output()
        .unwrap();
    stdout(&out).trim().parse().unwrap()
}

#[test]
fn issue_8_names_past_arg_max_are_split_into_batches_the_kernel_accepts() {
    let env = TestEnv::new();
    env.rules(&["--"], "batch_size = 100000\n");
    // Long names in a long folder: about 440 bytes each, so that 6,000 of them pass the
    // 2 MiB of ARG_MAX (checked below) and one batch of them cannot start.
    let folder = "f".repeat(200);
    let n = 6000;
    let mut total = 0;
    for i in 0..n {
        let rel = format!("{folder}/{i:05}-{}.txt", "n".repeat(190));
        let path = env.data_file(&rel, &format!("memory {i}"));
        total += bytes(&path).len() + 1 + 8;
    }
    assert!(total > arg_max(), "{total} bytes do not pass ARG_MAX");
    let out = env.run(&["--once", "--mode", "ingest", "--json"]);
    assert_exit(&out, 0);
    let record = run_record(&out);
    let ingest = action(&record, "ingest");
    assert_eq!(ingest["counts"]["done"], n, "{ingest:#}");
    let calls = env.calls();
    assert!(calls.len() >= 2, "one batch of {total} bytes cannot start");
    assert_eq!(ingest["counts"]["batches"], calls.len());
    let sent: Vec<Vec<u8>> = calls.iter().flat_map(|c| c.args.clone()).collect();
    let distinct: HashSet<&Vec<u8>> = sent.iter().collect();
    assert_eq!(
        (sent.len(), distinct.len()),
        (n, n),
        "each file exactly once"
    );
    assert!(
        ingest["summary"].as_str().unwrap().starts_with(&format!(
            "sent {n} files in {} batches: {n} done",
            calls.len()
        )),
        "{}",
        ingest["summary"]
    );
    let _: &Value = ingest;
}

/// What one argument or environment string costs `execve`: its bytes, a NUL, a pointer.
fn cost(s: &[u8]) -> usize {
    s.len() + 1 + 8
}

#[test]
fn issue_8_a_name_too_long_for_any_batch_fails_alone_and_the_others_are_sent() {
    let env = TestEnv::new();
    env.rules(&["--"], "");
    for i in 0..5 {
        env.data_file(format!("short-{i}.txt"), "short");
    }
    // About 3,600 bytes of path (within PATH_MAX), in 14 nested folders.
    let deep: Vec<String> = (0..14)
        .map(|i| format!("{i:02}{}", "d".repeat(248)))
        .collect();
    let long = env.data_file(format!("{}/long.txt", deep.join("/")), "long");
    // memsched's environment is padded until 3,000 bytes are left for file names: the
    // long name cannot be an argument beside the others, nor alone.
    let path = "/usr/local/bin:/usr/bin:/bin";
    let python = std::env::split_paths(path)
        .map(|d| d.join("python3"))
        .find(|p| p.exists())
        .unwrap();
    let argv: Vec<String> = serde_json::from_str(&env.step_argv(&[])).unwrap();
    let home = env.home().display().to_string();
    let memsched_env = [
        "MEMSCHED_ACTION=ingest".to_owned(),
        format!("MEMSCHED_HOME={home}"),
        format!("MEMSCHED_DATA_DIR={home}/Data"),
        format!("MEMSCHED_INDEX_DIR={home}/index"),
        format!("MEMSCHED_STATE_DIR={home}/state"),
        "MEMSCHED_RESULT=/tmp/memsched-ingest-XXXXXX/result.json".to_owned(),
        format!("PATH={path}"),
        format!("HOME={home}"),
    ];
    let fixed: usize = bytes(&python).len()
        + 1
        + argv.iter().map(|a| cost(a.as_bytes())).sum::<usize>()
        + cost(b"--")
        + memsched_env
            .iter()
            .map(|e| cost(e.as_bytes()))
            .sum::<usize>()
        + 8;
    let room = 3000;
    assert!(cost(&bytes(&long)) > room + 500, "{}", bytes(&long).len());
    // In variables of 100,000 bytes: one string may not pass 128 KiB.
    let padded = |args: &[&str]| {
        let mut cmd = env.command(args);
        cmd.env_clear().env("PATH", path).env("HOME", env.home());
        let mut pad = arg_max() - fixed - room;
        for i in 0.. {
            let key = format!("PAD{i:02}");
            let value = pad.min(100_000) - cost(key.as_bytes()) - 1;
            pad -= value + cost(key.as_bytes()) + 1;
            cmd.env(key, "p".repeat(value));
            if pad < 200 {
                break;
            }
        }
        cmd
    };
    let dry = padded(&["--once", "--mode", "ingest", "--dry-run"])
        .output()
        .unwrap();
    assert_exit(&dry, 0);
    assert!(
        stdout(&dry).contains(
            "would send 5 files in 1 batch; 1 file not sent: too long for an argument list"
        ),
        "{}",
        stdout(&dry)
    );
    let mut cmd = padded(&["--once", "--mode", "ingest", "--json"]);
    let out = cmd.output().unwrap();
    // The long file failed (exit 1); the others went through.
    assert_exit(&out, 1);
    let record = run_record(&out);
    let ingest = action(&record, "ingest");
    assert_eq!(ingest["counts"]["done"], 5, "{ingest:#}");
    assert_eq!(ingest["counts"]["failed"], 1, "{ingest:#}");
    let sent = env.sent();
    assert_eq!(sent.len(), 5);
    assert!(!sent.contains(&bytes(&long)));
    let summary = ingest["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("sent 5 files in 1 batch: 5 done, 0 failed; 1 file not sent"),
        "{summary}"
    );
    let tasks = env.state_json("task_queue.json");
    let task = &tasks["tasks"][0];
    assert_eq!(task["status"], "failed");
    assert!(
        task["last_error"]
            .as_str()
            .unwrap()
            .contains("does not fit in the argument space"),
        "{task:#}"
    );
    assert!(
        task.get("command").is_none(),
        "it could not start as a command either"
    );
}
