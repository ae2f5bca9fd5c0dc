//! Work a run creates runs in that run (issue 19): a burst of files on stdin goes to the step
//! in one load, not in batches of 64.

use crate::util::*;

#[test]
fn issue_19_a_burst_on_stdin_goes_to_the_step_in_one_call_without_batch_size() {
    let env = TestEnv::new();
    env.rules(&[], "pass_files = \"stdin-nul\"\n");
    let n = 2000;
    for i in 0..n {
        env.data_file(format!("import/{i:04}.txt"), &format!("memory {i}"));
    }
    let out = env.run(&["--once", "--mode", "ingest", "--json"]);
    assert_exit(&out, 0);
    let record = run_record(&out);
    let ingest = action(&record, "ingest");
    assert_eq!(ingest["counts"]["done"], n, "{ingest:#}");
    let calls = env.calls();
    let names: Vec<usize> = calls
        .iter()
        .map(|c| c.stdin.split(|b| *b == 0).filter(|n| !n.is_empty()).count())
        .collect();
    assert_eq!(names, vec![n], "one step call carrying every file");
}
