//! What ships beside the binary: the systemd unit passes `systemd-analyze verify`, and the
//! man page and completions are generated from the flags.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringecho-server"))
}

#[test]
fn systemd_unit_verifies_clean() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/ringecho-server.service"
    ))
    .unwrap();
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
