//! The docs are tested: every fenced block in README.md and docs/*.md says what it is, and
//! every shell block (`sh`, `bash`, `shell`) runs as written and exits 0, or carries the line
//! `# not run here: REASON` that a reader sees too.
//!
//! Shell blocks run as a new user would paste them, from the repository's top directory, in a
//! private network namespace (its own ports: the tour's fixed 8000 and 9000 are free) and a
//! private mount namespace whose /etc/hosts maps `localhost` to ::1 first, as stock Debian and
//! Ubuntu hosts do. As root without sudo, `sudo` is a shim that runs its command.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringecho_integration::repo;
use ringecho_testkit::{can_run, is_root, on_path, Need};

/// The marker that exempts a shell block, with its reason after it.
const MARKER: &str = "# not run here:";
/// How long one block may run.
const LIMIT: Duration = Duration::from_secs(600);

/// A fenced block: where it is, its info string, and its lines.
#[derive(Debug)]
struct Block {
    file: String,
    line: usize,
    info: String,
    body: String,
}

fn blocks() -> Vec<Block> {
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.strip_prefix(repo()).unwrap().display().to_string();
        let mut open: Option<Block> = None;
        for (i, line) in text.lines().enumerate() {
            let Some(rest) = line.trim_start().strip_prefix("```") else {
                if let Some(b) = &mut open {
                    b.body.push_str(line);
                    b.body.push('\n');
                }
                continue;
            };
            match open.take() {
                Some(b) => out.push(b),
                None => {
                    open = Some(Block {
                        file: name.clone(),
                        line: i + 1,
                        info: rest.trim().to_string(),
                        body: String::new(),
                    })
                }
            }
        }
        assert!(open.is_none(), "{name}: a fenced block is never closed");
    }
    out
}

fn is_shell(b: &Block) -> bool {
    matches!(b.info.as_str(), "sh" | "bash" | "shell")
}

#[test]
fn docs_every_block_says_what_it_is_and_why_a_shell_one_is_not_run() {
    let all = blocks();
    assert!(all.iter().filter(|b| is_shell(b)).count() >= 4, "{all:?}");
    for b in &all {
        assert!(
            !b.info.is_empty(),
            "{}:{}: say what this block is (```sh for commands, ```text for output)",
            b.file,
            b.line
        );
        if let Some(reason) = b.body.lines().find_map(|l| l.trim().strip_prefix(MARKER)) {
            assert!(
                is_shell(b),
                "{}:{}: the marker is for shell blocks",
                b.file,
                b.line
            );
            assert!(
                reason.trim().len() > 10,
                "{}:{}: say why the block is not run",
                b.file,
                b.line
            );
        }
    }
}

/// Runs one shell block in fresh network and mount namespaces; returns its output.
fn run_block(b: &Block, work: &Path) -> (bool, String) {
    let hosts = work.join("hosts");
    std::fs::write(
        &hosts,
        "::1 localhost ip6-localhost ip6-loopback\n127.0.0.1 localhost\n",
    )
    .unwrap();
    let shims = work.join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    if is_root() && !on_path("sudo") {
        let sudo = shims.join("sudo");
        std::fs::write(
            &sudo,
            "#!/bin/sh\n# root already: run the command.\nexec \"$@\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let script = work.join("block.sh");
    std::fs::write(&script, &b.body).unwrap();
    let setup = format!(
        "mount --bind {hosts} /etc/hosts && ip link set lo up && cd {repo} && exec bash -e {script}",
        hosts = hosts.display(),
        repo = repo().display(),
        script = script.display()
    );
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = work.join("out.txt");
    let mut child = Command::new("unshare")
        .args(["-m", "-n", "bash", "-c", &setup])
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    match status {
        Some(s) => (s.success(), out),
        None => (false, format!("{out}\n(stopped after {LIMIT:?})")),
    }
}

#[test]
fn docs_shell_blocks_run_as_written() {
    let me = "docs_shell_blocks_run_as_written";
    if !can_run(me, &[Need::Root, Need::Tool("unshare"), Need::Tool("ip")]) {
        return;
    }
    let work = std::env::temp_dir().join(format!("ringecho-docs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let mut ran = 0;
    for b in blocks().iter().filter(|b| is_shell(b)) {
        if b.body.lines().any(|l| l.trim().starts_with(MARKER)) {
            continue;
        }
        let started = Instant::now();
        let (ok, out) = run_block(b, &work);
        eprintln!(
            "{}:{}: {} in {:.0?}",
            b.file,
            b.line,
            if ok { "ran" } else { "FAILED" },
            started.elapsed()
        );
        assert!(
            ok,
            "{}:{} failed:\n{}\n--- output:\n{out}",
            b.file, b.line, b.body
        );
        assert!(!out.contains("panicked"), "{}:{}: {out}", b.file, b.line);
        ran += 1;
    }
    assert!(ran >= 1, "no shell block ran");
    std::fs::remove_dir_all(&work).unwrap();
}

/// The docs list exactly the metrics the server exports: every name in the table
/// (`ringecho_common::metric::ALL`) appears in backticks, and every backticked `ringecho_…`
/// name is in the table.
#[test]
fn the_docs_list_the_servers_metrics() {
    use std::collections::BTreeSet;
    let table: BTreeSet<String> = ringecho_common::metric::ALL
        .iter()
        .map(|m| m.exposed())
        .collect();
    let mut docs = BTreeSet::new();
    for file in [repo().join("README.md"), repo().join("docs/usage.md")] {
        let text = std::fs::read_to_string(&file).unwrap();
        for piece in text.split('`').skip(1).step_by(2) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if name.starts_with("ringecho_") {
                docs.insert(name);
            }
        }
    }
    let missing: Vec<_> = table.difference(&docs).collect();
    let unknown: Vec<_> = docs.difference(&table).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/usage.md lacks {missing:?}; it names {unknown:?}, which the server does not export"
    );
}
