//! Each section's check, table-driven: a snippet of watch-rules.toml, and whether it is
//! accepted or the exact error it gives, so moving a check between rooms changes no text.

use super::*;

type Case = (&'static str, std::result::Result<(), &'static str>);

/// Every case whose outcome differs, all reported at once.
fn check_all(cases: &[Case]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(text, expected)| {
            let got = Rules::parse(Path::new("rules.toml"), text)
                .map(|_| ())
                .map_err(|e| e.to_string());
            let expected = expected.map_err(str::to_owned);
            (got != expected)
                .then(|| format!("{text:?}\n  expected {expected:?}\n  got      {got:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

const SETTINGS: &[Case] = &[
    (
        "debounce = \"2s\"\nmax_wait = \"1s\"\n",
        Err("rules.toml:2:12: max_wait must be at least debounce (2s), found 1s"),
    ),
    (
        "max_wait = \"100ms\"\n",
        Err("rules.toml:1:12: max_wait must be at least debounce (500ms), found 100ms"),
    ),
    ("debounce = \"1s\"\n", Ok(())),
    (
        "debounce = \"2h\"\n",
        Err("rules.toml:1:12: debounce = \"2h\" is out of range: it must be between 0s and 1h"),
    ),
    (
        "tick = \"0s\"\n",
        Err("rules.toml:1:8: tick = \"0s\" is out of range: it must be between 1s and 1day"),
    ),
    (
        "log_keep = 0\n",
        Err("rules.toml:1:12: log_keep = 0 is out of range: it must be between 1 and 100000"),
    ),
    (
        "pause_file = \"\"\n",
        Err(
            "rules.toml:1:14: pause_file must name a file inside data_dir, relative to it (like \".memsched-pause\"), found \"\"",
        ),
    ),
    (
        "pause_file = \"/tmp/p\"\n",
        Err(
            "rules.toml:1:14: pause_file must name a file inside data_dir, relative to it (like \".memsched-pause\"), found \"/tmp/p\"",
        ),
    ),
    (
        "pause_file = \"../p\"\n",
        Err(
            "rules.toml:1:14: pause_file must name a file inside data_dir, relative to it (like \".memsched-pause\"), found \"../p\"",
        ),
    ),
    ("pause_file = \"sub/p\"\n", Ok(())),
];

#[test]
fn the_settings_are_checked_each_in_its_range_and_max_wait_after_debounce() {
    check_all(SETTINGS);
}

const INGEST: &[Case] = &[
    (
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\nremove = [\"r\", \"{files}\"]\nmax_remove = \"25%\"\n",
        Ok(()),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\nremove = [\"r\"]\n",
        Err("rules.toml:3:10: [actions.ingest] remove needs {files} to pass the gone files"),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\nremove = [\"r\", \"{file}\"]\n",
        Err(
            "rules.toml:3:10: unknown placeholder {file} in [actions.ingest] remove; known here: {files}, {list}",
        ),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\nmax_remove = \"120%\"\n",
        Err(
            "rules.toml:3:14: max_remove must be a count of memories (20) or a share of them (\"25%\", up to \"100%\")",
        ),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\nmax_remove = -1\n",
        Err(
            "rules.toml:3:14: max_remove must be a count of memories (20) or a share of them (\"25%\", up to \"100%\")",
        ),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\"]\npass_files = \"stdin-lines\"\n",
        Ok(()),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\npass_files = \"stdin-lines\"\n",
        Err(
            "rules.toml:2:11: [actions.ingest] command has {files}, but pass_files = \"stdin-lines\" sends the files on stdin: {files} would be empty; remove it",
        ),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\"]\npass_files = \"stdin-nul\"\nremove = [\"r\", \"--list={list}\"]\n",
        Err(
            "rules.toml:4:10: [actions.ingest] remove has {list}, but pass_files = \"stdin-nul\" sends the files on stdin: {list} would be empty; remove it",
        ),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\"]\npass_files = \"list-file\"\n",
        Err("rules.toml:2:11: [actions.ingest] command needs {list} to pass the files"),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\"]\nremove = [\"i\"]\nresident = true\nidle_exit = \"5m\"\n",
        Ok(()),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\nresident = true\n",
        Err(
            "rules.toml:2:11: [actions.ingest] command has {files}, but resident = true sends each batch as a JSON line on stdin: {files} would be empty; remove it",
        ),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\"]\nremove = [\"r\", \"{list}\"]\nresident = true\n",
        Err(
            "rules.toml:3:10: [actions.ingest] remove has {list}, but resident = true sends each batch as a JSON line on stdin: {list} would be empty; remove it",
        ),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\"]\nresident = true\npass_files = \"stdin-nul\"\n",
        Err(
            "rules.toml:3:12: resident = true gives the step each batch as one JSON line on stdin: pass_files does not apply beside it; remove pass_files",
        ),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\nidle_exit = \"5m\"\n",
        Err(
            "rules.toml:3:13: idle_exit is for a resident step: set resident = true, or remove idle_exit",
        ),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\"]\nresident = true\nidle_exit = \"soon\"\n",
        Err(
            "rules.toml:4:13: idle_exit = \"soon\" is not a valid duration (expected number at 0); write it like \"200ms\", \"30s\" or \"15m\"",
        ),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\nbatch_size = 0\n",
        Err("rules.toml:3:14: batch_size = 0 is out of range: it must be between 1 and 100000"),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\nsettle = \"2h\"\n",
        Err("rules.toml:3:10: settle = \"2h\" is out of range: it must be between 0s and 1h"),
    ),
    (
        "[actions.ingest]\ncommand = [\"i\", \"{files}\"]\nexclude = [\"b[\"]\n",
        Err("rules.toml:3:12: invalid glob \"b[\": unclosed character class; missing ']'"),
    ),
];

#[test]
fn the_ingest_table_is_checked() {
    check_all(INGEST);
}

const RETRY: &[Case] = &[
    (
        "[actions.retry]\ncommand = [\"r\"]\nparallel = 65\n",
        Err("rules.toml:3:12: parallel = 65 is out of range: it must be between 1 and 64"),
    ),
    (
        "[actions.retry]\ncommand = [\"r\"]\nbackoff = { factor = 0.5 }\n",
        Err("rules.toml:3:22: factor must be between 1 and 100, found 0.5"),
    ),
    (
        "[actions.retry]\ncommand = [\"r\"]\nbackoff = { jitter = 1.0 }\n",
        Err("rules.toml:3:22: jitter must be at least 0 and below 1, found 1"),
    ),
    (
        "[actions.retry]\ncommand = [\"r\"]\nbackoff = { initial = \"31d\" }\n",
        Err("rules.toml:3:23: initial = \"31d\" is out of range: it must be between 0s and 30days"),
    ),
    (
        "[actions.retry]\ncommand = [\"r\"]\nbreaker = { failures = 0 }\n",
        Err("rules.toml:3:24: failures = 0 is out of range: it must be between 1 and 10000"),
    ),
    (
        "[actions.retry]\ncommand = [\"r\"]\nbreaker = { cooldown = \"31d\" }\n",
        Err(
            "rules.toml:3:24: cooldown = \"31d\" is out of range: it must be between 0s and 30days",
        ),
    ),
    (
        "[actions.retry]\ncommand = [\"r\"]\nmax_attempts = 0\n",
        Err("rules.toml:3:16: max_attempts = 0 is out of range: it must be between 1 and 10000"),
    ),
    (
        "[actions.retry]\ncommand = [\"r\"]\nstuck_after = \"0s\"\n",
        Err(
            "rules.toml:3:15: stuck_after = \"0s\" is out of range: it must be between 1s and 11months 30days 3h 50m 24s",
        ),
    ),
    (
        "[actions.retry]\ncommand = [\"\"]\n",
        Err(
            "rules.toml:2:11: [actions.retry] command is empty; give the program and its arguments as a list",
        ),
    ),
];

#[test]
fn the_retry_table_is_checked() {
    check_all(RETRY);
}

const UPLOAD: &[Case] = &[
    (
        "[actions.upload]\ncommand = [\"u\"]\nsources = [\"[\"]\n",
        Err("rules.toml:3:12: invalid glob \"[\": unclosed character class; missing ']'"),
    ),
    (
        "[actions.upload]\ncommand = [\"u\"]\nmax_attempts = 10001\n",
        Err(
            "rules.toml:3:16: max_attempts = 10001 is out of range: it must be between 1 and 10000",
        ),
    ),
    (
        "[actions.upload]\ncommand = [\"u\", \"{files}\"]\n",
        Err(
            "rules.toml:2:11: unknown placeholder {files} in [actions.upload] command; known here: {path}, {relpath}, {remote}",
        ),
    ),
    (
        "[actions.upload]\ncommand = [\"u\"]\nbackoff = { max = \"x\" }\n",
        Err(
            "rules.toml:3:19: max = \"x\" is not a valid duration (expected number at 0); write it like \"200ms\", \"30s\" or \"15m\"",
        ),
    ),
    (
        "[actions.upload]\ncommand = [\"u\"]\ntimeout = \"10ms\"\n",
        Err(
            "rules.toml:3:11: timeout = \"10ms\" is out of range: it must be between 100ms and 7days",
        ),
    ),
];

#[test]
fn the_upload_table_is_checked() {
    check_all(UPLOAD);
}

const WATCHDOG: &[Case] = &[
    ("[actions.watchdog]\n", Ok(())),
    (
        "[actions.watchdog]\ncommand = []\n",
        Err(
            "rules.toml:2:11: [actions.watchdog] command is empty; give the program and its arguments as a list",
        ),
    ),
    (
        "[actions.watchdog]\ncommand = [\"w\", \"{files}\"]\n",
        Err(
            "rules.toml:2:11: unknown placeholder {files} in [actions.watchdog] command; known here: ",
        ),
    ),
    (
        "[actions.watchdog]\ncommand = [\"w\"]\ntimeout = \"50ms\"\n",
        Err(
            "rules.toml:3:11: timeout = \"50ms\" is out of range: it must be between 100ms and 7days",
        ),
    ),
    ("[actions.watchdog]\ntimeout = \"soon\"\n", Ok(())),
    ("[actions.watchdog]\nnotify = false\n", Ok(())),
];

#[test]
fn the_watchdog_table_is_checked_only_where_it_has_a_command() {
    check_all(WATCHDOG);
}

const RULES: &[Case] = &[
    (
        "[[rules]]\nname = \"r\"\nin = \"data\"\npaths = [\"*.txt\"]\nrun = [\"ingset\"]\n",
        Err(
            "rules.toml:5:8: unknown action \"ingset\" in rule \"r\"; known: ingest, retry, upload, watchdog; did you mean \"ingest\"?",
        ),
    ),
    (
        "[[rules]]\nname = \"r\"\nin = \"data\"\npaths = [\"a[\"]\nrun = [\"ingest\"]\n",
        Err("rules.toml:4:10: invalid glob \"a[\": unclosed character class; missing ']'"),
    ),
    (
        "[[rules]]\nname = \"r\"\nin = \"data\"\npaths = []\nrun = []\n",
        Ok(()),
    ),
];

#[test]
fn a_rule_is_checked() {
    check_all(RULES);
}

#[test]
fn a_watchdog_without_a_command_still_notifies_unless_told_not_to() {
    let parse = |text| Rules::parse(Path::new("rules.toml"), text).unwrap();
    let quiet = parse("[actions.watchdog]\nnotify = false\n")
        .watchdog
        .unwrap();
    assert!(quiet.command.is_none() && !quiet.notify);
    let plain = parse("[actions.watchdog]\n").watchdog.unwrap();
    assert!(plain.command.is_none() && plain.notify);
    let timed = parse("[actions.watchdog]\ncommand = [\"w\"]\ntimeout = \"5s\"\n");
    let command = timed.watchdog.unwrap().command.unwrap();
    assert_eq!(command.argv, ["w"]);
    assert_eq!(command.timeout, std::time::Duration::from_secs(5));
}

#[test]
fn a_rule_without_on_hears_every_kind_of_change() {
    let rules = Rules::parse(
        Path::new("rules.toml"),
        "[[rules]]\nname = \"r\"\nin = \"data\"\npaths = [\"*.txt\"]\nrun = [\"ingest\", \"upload\"]\n",
    )
    .unwrap();
    assert_eq!(rules.rules[0].on, EventKind::ALL);
    assert_eq!(rules.rules[0].run, [Action::Ingest, Action::Upload]);
}
