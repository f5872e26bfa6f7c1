//! scripts/install.sh as the README shows it: as a user into a prefix of theirs (no system
//! unit, and it says so), staged with DESTDIR (the unit lands there), and never building (a
//! missing build is named, not run as root).

use std::process::Command;

use ringecho_integration::repo;
use ringecho_testkit::is_root;

/// Runs install.sh with `args` as an ordinary user: this one, or nobody when root.
fn install_as_user(prefix: &std::path::Path) -> std::process::Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"]);
        c
    } else {
        Command::new("bash")
    };
    cmd.current_dir(repo())
        .arg("scripts/install.sh")
        .arg(prefix)
        .env_remove("DESTDIR")
        .output()
        .unwrap()
}

#[test]
fn install_sh_as_a_user_and_staged() {
    for b in [
        "ringecho-server",
        "ringecho-loadgen",
        "ringecho-client",
        "ringecho-perf",
    ] {
        assert!(
            repo().join("target/release").join(b).exists(),
            "scripts/test.sh builds the release binaries first"
        );
    }
    let base = std::env::temp_dir().join(format!("ringecho-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let prefix = base.join("user/.local");
    std::fs::create_dir_all(base.join("user")).unwrap();
    if is_root() {
        // nobody's home: a directory of its own.
        std::os::unix::fs::chown(&base, Some(65534), Some(65534)).unwrap();
        std::os::unix::fs::chown(base.join("user"), Some(65534), Some(65534)).unwrap();
    }
    let out = install_as_user(&prefix);
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("the systemd unit not installed"), "{text}");
    for f in [
        "bin/ringecho-server",
        "share/man/man1/ringecho-loadgen.1",
        "share/bash-completion/completions/ringecho-client",
        "bin/ringecho-perf",
        "share/man/man1/ringecho-perf.1",
    ] {
        assert!(prefix.join(f).exists(), "{f} not installed: {text}");
    }

    // Staged, as a package build does it: the unit goes under DESTDIR too.
    let stage = base.join("stage");
    let out = Command::new("bash")
        .current_dir(repo())
        .arg("scripts/install.sh")
        .arg("/usr/local")
        .env("DESTDIR", &stage)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let unit = std::fs::read_to_string(stage.join("etc/systemd/system/ringecho-server.service"))
        .unwrap_or_else(|e| panic!("no staged unit ({e}): {text}"));
    assert!(unit.contains("ExecStart=/usr/local/bin/ringecho-server"));
    assert!(stage.join("usr/local/bin/ringecho-loadgen").exists());

    // A prefix the user cannot write: a clear message, exit 1, nothing half-done.
    let out = install_as_user(std::path::Path::new("/usr/local/ringecho-test-denied"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write"), "{err}");
    std::fs::remove_dir_all(&base).unwrap();
}
