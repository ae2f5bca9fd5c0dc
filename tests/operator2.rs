//! What the operator sees (issue 20, items 11 and 12): one complete manual page that matches
//! the README and the command line, and a step's live output.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use clap::CommandFactory;

use crate::util::*;

/// A tool the test needs; .ci/run installs it.
fn tool(name: &str, package: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    assert!(
        found,
        "{name} is missing: apt-get install {package} (.ci/run does)"
    );
    Command::new(name)
}

/// `memsched man`, its roff source.
fn man_source(env: &TestEnv) -> String {
    let out = env.bare_command().arg("man").output().unwrap();
    assert_exit(&out, 0);
    stdout(&out)
}

/// The page as text, through groff with every warning on (`-ww`): a warning fails the test.
/// Lines are 200 columns, so no tag or key wraps.
fn rendered(source: &str) -> String {
    let mut groff = tool("groff", "groff-base")
        .args(["-man", "-Tutf8", "-ww", "-rLL=200n", "-P-cbou"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut groff.stdin.take().unwrap(), source.as_bytes()).unwrap();
    let out = groff.wait_with_output().unwrap();
    assert!(out.status.success(), "groff failed: {}", stderr(&out));
    assert_eq!(stderr(&out), "", "groff warns about the page");
    // groff's UTF-8 hyphen and minus are ASCII to the reader.
    stdout(&out).replace(['\u{2010}', '\u{2212}'], "-")
}

/// The lines of the section (a heading at column 0) called `name`, heading excluded.
fn section<'a>(page: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = page.lines().skip_while(|l| *l != name);
    assert!(lines.next().is_some(), "no section {name} in:\n{page}");
    lines
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

/// A section's subsections (headings indented three spaces), title to lines.
fn subsections<'a>(lines: &[&'a str]) -> Vec<(String, Vec<&'a str>)> {
    let mut all: Vec<(String, Vec<&str>)> = Vec::new();
    for line in lines {
        let indent = line.len() - line.trim_start().len();
        if indent == 3 {
            all.push((line.trim().to_owned(), Vec::new()));
        } else if let Some((_, body)) = all.last_mut() {
            body.push(line);
        }
    }
    all
}

/// The names a subsection's tagged paragraphs describe (`data_dir (default Data)` names
/// `data_dir`; `task_queue, ingest_hash` names both). A tag sits at column 7 with its text
/// at column 14: on the next line, or on its own line after two spaces or more.
fn tags(lines: &[&str]) -> BTreeSet<String> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    lines
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            indent(l) == 7
                && (lines.get(i + 1).is_some_and(|next| indent(next) == 14)
                    || l.get(12..14) == Some("  ") && l.len() > 14 && !l[14..].starts_with(' '))
        })
        .flat_map(|(_, l)| {
            let tag = l.trim();
            let tag = tag.split("  ").next().unwrap_or(tag);
            let tag = tag.split(" (").next().unwrap_or(tag);
            tag.split(", ").map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

/// README.md's Configuration tables: for each, its label (the heading or the `…:` line
/// above it: `paths.json`, `Global settings`, `[actions.ingest]`) and the keys in its first
/// column.
fn readme_tables() -> Vec<(String, Vec<String>)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("\n## Configuration\n").unwrap();
    let end = start + 1 + readme[start + 1..].find("\n## ").unwrap();
    let lines: Vec<&str> = readme[start..end].lines().collect();
    let mut tables = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].starts_with('|') {
            i += 1;
            continue;
        }
        let label_line = lines[..i]
            .iter()
            .rev()
            .find(|l| l.starts_with("### ") || l.trim_end().ends_with(':'))
            .unwrap();
        let label = match label_line.strip_prefix("### ") {
            Some(heading) => heading.to_owned(),
            None => match label_line.split('`').nth(1) {
                Some(code) => code.to_owned(),
                None => label_line.trim_end_matches(':').to_owned(),
            },
        };
        let mut keys = Vec::new();
        // The header row and the |---| row first.
        i += 2;
        while i < lines.len() && lines[i].starts_with('|') {
            let cell = lines[i].split('|').nth(1).unwrap();
            keys.extend(cell.split('`').skip(1).step_by(2).map(str::to_owned));
            i += 1;
        }
        tables.push((label, keys));
    }
    tables
}

/// Issue 20 item 11: the page renders without a warning through groff and through man(1),
/// and has every section a user looks for.
#[test]
fn issue_20_the_manual_page_renders_cleanly_with_every_section() {
    let env = TestEnv::new();
    let source = man_source(&env);
    let page = rendered(&source);
    for heading in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "CONFIGURATION",
        "ENVIRONMENT",
        "FILES",
        "EXIT STATUS",
        "SEE ALSO",
    ] {
        assert!(
            !section(&page, heading).is_empty(),
            "{heading} is empty:\n{page}"
        );
    }
    let environment = section(&page, "ENVIRONMENT").join("\n");
    for variable in [
        "MEMSCHED_PATHS",
        "RUST_LOG",
        "NO_COLOR",
        "JOURNAL_STREAM",
        "MEMSCHED_ACTION",
        "MEMSCHED_HOME",
        "MEMSCHED_DATA_DIR",
        "MEMSCHED_INDEX_DIR",
        "MEMSCHED_STATE_DIR",
        "MEMSCHED_RESULT",
        "MEMSCHED_TASK_ID",
        "MEMSCHED_HEALTH",
    ] {
        assert!(environment.contains(variable), "{variable}:\n{environment}");
    }
    let files = section(&page, "FILES").join("\n");
    for file in [
        "scheduler_log.json",
        "task_queue.json.lock",
        "ingest.lock",
        "scheduler.lock",
        ".memsched-pause",
        ".desktop",
        ".service",
    ] {
        assert!(files.contains(file), "{file}:\n{files}");
    }
    let exit = tags(&section(&page, "EXIT STATUS"));
    assert_eq!(
        exit,
        ["0", "1", "2", "3", "130"].map(str::to_owned).into(),
        "{page}"
    );
    // man(1) itself, as `man memsched` will show it.
    let page_file = env.write("memsched.1", &source);
    let out = tool("man", "man-db")
        .arg("-l")
        .arg(&page_file)
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(stderr(&out), "");
    assert!(stdout(&out).contains("CONFIGURATION"), "{}", stdout(&out));
}

/// Issue 20 item 11: every subcommand and its options, and every key of the README's
/// Configuration tables under the matching heading, are in the page; nothing points at a
/// memsched-* page, which does not exist.
#[test]
fn issue_20_the_manual_page_has_every_subcommand_and_every_key_of_the_readme() {
    let env = TestEnv::new();
    let source = man_source(&env);
    let page = rendered(&source);

    let commands = subsections(&section(&page, "COMMANDS"));
    let mut queue = vec![("memsched".to_owned(), memsched::cli::Cli::command())];
    let mut checked = 0;
    while let Some((path, command)) = queue.pop() {
        for sub in command.get_subcommands() {
            let sub_path = format!("{path} {}", sub.get_name());
            let (_, body) = commands
                .iter()
                .find(|(title, _)| *title == sub_path)
                .unwrap_or_else(|| panic!("no subsection {sub_path:?} under COMMANDS:\n{page}"));
            let described = tags(body);
            for arg in sub.get_arguments().filter(|a| !a.is_global_set()) {
                if let Some(long) = arg.get_long().filter(|l| *l != "help") {
                    let name = format!("--{long}");
                    assert!(
                        described.iter().any(|t| t.contains(&name)),
                        "{sub_path}: {name} is not described: {described:?}"
                    );
                }
            }
            checked += 1;
            queue.push((sub_path, sub.clone()));
        }
    }
    assert!(checked >= 14, "only {checked} subcommands found");

    let configuration = subsections(&section(&page, "CONFIGURATION"));
    let tables = readme_tables();
    assert!(tables.len() >= 6, "README tables: {tables:?}");
    for (label, keys) in tables {
        let matching: Vec<_> = configuration
            .iter()
            .filter(|(title, _)| title.to_lowercase().contains(&label.to_lowercase()))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "README's table {label:?} has no one heading in CONFIGURATION: {:?}",
            configuration.iter().map(|(t, _)| t).collect::<Vec<_>>()
        );
        let described = tags(&matching[0].1);
        let readme: BTreeSet<String> = keys.into_iter().collect();
        assert_eq!(
            described, readme,
            "{label}: the page's keys (left) differ from README's (right)"
        );
    }

    for text in [&source, &page] {
        let dangling: Vec<&str> = text
            .match_indices("memsched-")
            .filter_map(|(at, _)| {
                let rest = &text[at..];
                let name_end = rest.find(|c: char| !(c.is_alphanumeric() || c == '-'))?;
                rest[name_end..].starts_with('(').then(|| &rest[..name_end])
            })
            .collect();
        assert!(
            dangling.is_empty(),
            "references to pages that do not exist: {dangling:?}"
        );
    }
}

/// Issue 20 item 11: `man --install` puts the page where man(1) finds it: under
/// $XDG_DATA_HOME, else ~/.local/share.
#[test]
fn issue_20_man_install_writes_the_page_where_man_finds_it() {
    let env = TestEnv::new();
    let source = man_source(&env);
    let data_home = env.home().join("xdg-data");
    let out = env
        .bare_command()
        .args(["man", "--install"])
        .env("XDG_DATA_HOME", &data_home)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let page = data_home.join("man/man1/memsched.1");
    assert_eq!(stdout(&out).trim(), page.display().to_string());
    assert_eq!(std::fs::read_to_string(&page).unwrap(), source);
    let found = tool("man", "man-db")
        .args(["-w", "memsched"])
        .env("MANPATH", data_home.join("man"))
        .output()
        .unwrap();
    assert_exit(&found, 0);
    assert_eq!(stdout(&found).trim(), page.display().to_string());

    // man-db searches ~/.local/share/man only while ~/.local/bin is on PATH: it says how.
    let out = env
        .bare_command()
        .args(["man", "--install"])
        .env_remove("XDG_DATA_HOME")
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let page = env.home().join(".local/share/man/man1/memsched.1");
    assert_eq!(std::fs::read_to_string(&page).unwrap(), source);
    let root = env.home().join(".local/share/man");
    assert!(
        stderr(&out).contains(&format!("export MANPATH=\"{}:\"", root.display())),
        "{}",
        stderr(&out)
    );
}

/// A home whose ingest step is tests/steps/chatty.py, with one file to send: the step
/// prints a line on stdout and one on stderr, then waits for the file this returns.
fn chatty_home(env: &TestEnv) -> std::path::PathBuf {
    let step = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/steps/chatty.py");
    let go = env.home().join("go");
    let argv = serde_json::to_string(&[
        "python3",
        &step.display().to_string(),
        &go.display().to_string(),
        "{files}",
    ])
    .unwrap();
    env.raw_rules(&format!(
        "[actions.ingest]\ncommand = {argv}\nsettle = \"0s\"\n"
    ));
    env.data_file("a.txt", "alpha");
    go
}

/// Issue 20 item 12 (c): `log N` shows the tail of a step's stdout beside its stderr.
#[test]
fn issue_20_log_shows_both_output_tails_of_a_step() {
    let env = TestEnv::new();
    let go = chatty_home(&env);
    std::fs::write(&go, "").unwrap();
    assert_exit(&env.run(&["--once"]), 0);
    let out = env.run(&["log", "1"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("        stdout: hello-out"), "{text}");
    assert!(text.contains("        stderr: hello-err"), "{text}");
}

/// Issue 20 item 12 (b): with -v a step's stdout and stderr reach memsched's stderr line by
/// line as the step writes them, prefixed with the action, and are still kept in the
/// record; without -v they are not shown.
#[test]
fn issue_20_verbose_passes_a_steps_output_through_as_it_comes() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};

    let env = TestEnv::new();
    let go = chatty_home(&env);
    let mut child = env
        .command(&["-v", "--once"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let wanted = ["ingest| hello-out", "ingest| hello-err"];
    while !wanted.iter().all(|w| seen.iter().any(|l| l == w)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|e| {
            panic!("the step's lines did not come while it ran ({e}):\n{seen:#?}")
        });
        seen.push(line);
    }
    // The step still runs: it waits for `go`, which only now exists.
    assert!(child.try_wait().unwrap().is_none(), "{seen:#?}");
    std::fs::write(&go, "").unwrap();
    wait_until(
        "memsched exits",
        Duration::from_secs(30),
        &|| seen.join("\n"),
        || child.try_wait().unwrap().is_some(),
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let runs = env.runs();
    let command = &action(runs.last().unwrap(), "ingest")["commands"][0];
    assert_eq!(command["stdout_tail"], serde_json::json!(["hello-out"]));
    assert_eq!(command["stderr_tail"], serde_json::json!(["hello-err"]));

    // Without -v the step's output stays in the record.
    env.data_file("b.txt", "beta");
    let out = env.run(&["--once"]);
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains("hello-"), "{}", stderr(&out));
    // Nor is a spinner drawn on a stderr that is no terminal.
    assert!(
        !stderr(&out).contains("ingest: python3"),
        "{}",
        stderr(&out)
    );
}

/// memsched with `args` in `env`'s home, run on a pseudo-terminal by tests/steps/pty_run.py;
/// what it draws there comes out of the child's stdout as it is drawn.
fn on_a_terminal(env: &TestEnv, args: &[&str]) -> std::process::Child {
    let wrapper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/steps/pty_run.py");
    Command::new("python3")
        .arg(wrapper)
        .arg(BIN)
        .arg("--paths")
        .arg(env.home().join("paths.json"))
        .args(args)
        .current_dir(env.home())
        .env("HOME", env.home())
        .env("XDG_CONFIG_HOME", env.home().join(".config"))
        .env("TERM", "xterm")
        .env_remove("MEMSCHED_PATHS")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What `child` writes to its stdout, chunk by chunk as it comes, until it closes.
fn chunks(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<Vec<u8>> {
    use std::io::Read;
    let mut pipe = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0; 65536];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Issue 20 item 12 (a): on a terminal, a running step shows one line saying what runs (the
/// action, the program, its file) and for how long, while it runs; it is cleared when the
/// step ends.
#[test]
fn issue_20_a_running_step_shows_a_spinner_on_a_terminal_cleared_when_it_ends() {
    use std::time::{Duration, Instant};

    let env = TestEnv::new();
    let go = chatty_home(&env);
    let mut child = on_a_terminal(&env, &["--once"]);
    let output = chunks(&mut child);
    let mut screen = Vec::new();
    let spinner = "ingest: python3 on a.txt, ";
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&screen).contains(spinner) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = output.recv_timeout(left).unwrap_or_else(|e| {
            panic!(
                "no spinner while the step ran ({e}):\n{:?}",
                String::from_utf8_lossy(&screen)
            )
        });
        screen.extend(chunk);
    }
    // Seen while the step still waits for `go`.
    std::fs::write(&go, "").unwrap();
    while let Ok(chunk) = output.recv_timeout(Duration::from_secs(30)) {
        screen.extend(chunk);
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let screen = String::from_utf8_lossy(&screen);
    let last = screen.rfind(spinner).unwrap();
    let after = &screen[last + spinner.len()..];
    // The time it has run: "0s", "1s" …
    assert!(
        after.starts_with(|c: char| c.is_ascii_digit()),
        "no elapsed time: {screen:?}"
    );
    // After its last drawing, the line is erased (ESC [2K), before the summary.
    let erased = after
        .find("\x1b[2K")
        .unwrap_or_else(|| panic!("never cleared: {screen:?}"));
    let summary = after.find("ingest").unwrap_or(after.len());
    assert!(
        erased < summary,
        "cleared only after the summary: {screen:?}"
    );
}

/// Issue 20 item 12 (a): `-q` draws no spinner, even on a terminal, for a step that runs a
/// second (the spinner redraws every 200 ms).
#[test]
fn issue_20_quiet_draws_no_spinner_on_a_terminal() {
    let env = TestEnv::new();
    env.rules(&["--sleep", "1", "--"], "");
    env.data_file("a.txt", "alpha");
    let mut child = on_a_terminal(&env, &["--once", "-q"]);
    let output = chunks(&mut child);
    let mut screen = Vec::new();
    while let Ok(chunk) = output.recv_timeout(std::time::Duration::from_secs(30)) {
        screen.extend(chunk);
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let screen = String::from_utf8_lossy(&screen);
    assert!(screen.contains("ingest"), "no summary: {screen:?}");
    assert!(!screen.contains("ingest: python3"), "{screen:?}");
}
