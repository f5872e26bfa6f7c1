//! What ships beside the binary: the systemd unit passes `systemd-analyze verify`, and the
//! man page and completions are generated from the flags.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringecho-server"))
}

/// dist/ringecho-server.service as it ships.
fn shipped_unit() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/ringecho-server.service"
    ))
    .unwrap()
}

#[test]
fn systemd_unit_verifies_clean() {
    if !ringecho_testkit::can_run(
        "systemd_unit_verifies_clean",
        &[ringecho_testkit::Need::Tool("systemd-analyze")],
    ) {
        return;
    }
    let unit = shipped_unit();
    // Point ExecStart at this build's binary: verify checks that it exists.
    let unit = unit.replace(
        "/usr/local/bin/ringecho-server",
        env!("CARGO_BIN_EXE_ringecho-server"),
    );
    for want in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "LimitNOFILE=",
        "ProtectSystem=strict",
    ] {
        assert!(unit.contains(want), "the unit lacks {want}");
    }
    let dir = std::env::temp_dir().join(format!("ringecho-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ringecho-server.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/test.sh installs systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    // Only what concerns our unit counts: the host's own units may warn about themselves.
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("ringecho-server.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn man_page_and_completions_are_generated() {
    for (what, expect) in [
        ("man", ".TH ringecho-server"),
        ("complete-bash", "complete -F _ringecho__server"),
        ("complete-zsh", "#compdef ringecho-server"),
        ("complete-fish", "complete -c ringecho-server"),
    ] {
        let out = bin().args(["--generate", what]).output().unwrap();
        assert!(out.status.success(), "{what}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(expect), "{what}: {text}");
        assert!(text.contains("keepalive"), "{what} lacks the flags");
    }
}

/// The members of a systemd syscall group (`@name`, nested groups expanded) or a lone name.
fn syscalls(item: &str, out: &mut std::collections::BTreeSet<String>) {
    if !item.starts_with('@') {
        out.insert(item.to_string());
        return;
    }
    let text = Command::new("systemd-analyze")
        .args(["syscall-filter", item])
        .output()
        .expect("systemd-analyze");
    for line in String::from_utf8_lossy(&text.stdout).lines().skip(1) {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        syscalls(l, out);
    }
}

/// `--pin` and the open-file limit must survive the unit's syscall filter: its lines are
/// applied in order as systemd does (the first, an allow list, sets the set; `~` lines take
/// away, later allow lines give back) and the calls the server makes checked against it.
#[test]
fn systemd_unit_allows_what_the_server_calls() {
    if !ringecho_testkit::can_run(
        "systemd_unit_allows_what_the_server_calls",
        &[ringecho_testkit::Need::Tool("systemd-analyze")],
    ) {
        return;
    }
    let unit = shipped_unit();
    let mut allowed = std::collections::BTreeSet::new();
    for (i, line) in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
        .enumerate()
    {
        let (deny, list) = match line.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        assert!(i > 0 || !deny, "the first filter line is an allow list");
        let mut set = std::collections::BTreeSet::new();
        for item in list.split_whitespace() {
            syscalls(item, &mut set);
        }
        if deny {
            allowed.retain(|s| !set.contains(s));
        } else {
            allowed.extend(set);
        }
    }
    for call in [
        "sched_setaffinity",
        "sched_getaffinity",
        "setrlimit",
        "prlimit64",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "accept4",
        "epoll_wait",
    ] {
        assert!(allowed.contains(call), "the unit's filter denies {call}");
    }
    assert!(!allowed.contains("reboot") && !allowed.contains("mount"));
}
