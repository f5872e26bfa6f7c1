//! The scripts' own edges: peers.sh where the peers cannot be fetched (as on a machine without
//! access to their hosts): one clear line each, nothing on stdout for compare.sh to run, exit
//! 0, so a comparison goes on without them; fleet.sh's durations.

use std::process::Command;

use ringecho_integration::repo;

#[test]
fn peers_that_cannot_be_fetched_are_named_and_left_out() {
    let cache = std::env::temp_dir().join(format!("ringecho-peers-{}", std::process::id()));
    let mut cmd = Command::new("bash");
    cmd.current_dir(repo())
        .args(["scripts/peers.sh", "--cache"])
        .arg(&cache);
    for var in ["LIBURING", "C_EPOLL", "TOKIO", "MONOIO"] {
        cmd.env(format!("RINGECHO_PEER_SRC_{var}"), "/nonexistent/peer.git");
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{err}");
    for name in ["liburing", "c-epoll", "tokio", "monoio"] {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("peers.sh: {name}: cannot fetch")))
            .unwrap_or_else(|| panic!("no line for {name}: {err}"));
        assert!(line.ends_with("going on without it"), "{line}");
    }
    let bad = Command::new("bash")
        .current_dir(repo())
        .args(["scripts/peers.sh", "--frobnicate"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    std::fs::remove_dir_all(&cache).unwrap();
}

/// fleet.sh's `--start-in` takes the durations the docs show (500ms, 10s, 1m) and names a bad
/// one; the host command here (`false`) fails at once, after the flags were accepted.
#[test]
fn fleet_sh_start_in_takes_minutes_and_names_a_bad_duration() {
    let out_dir = std::env::temp_dir().join(format!("ringecho-fleet-args-{}", std::process::id()));
    let run = |start_in: &str| {
        Command::new("bash")
            .current_dir(repo())
            .args([
                "scripts/fleet.sh",
                "--host",
                "h1",
                "--ssh",
                "false",
                "--start-in",
            ])
            .arg(start_in)
            .arg("--out")
            .arg(&out_dir)
            .args(["--", "--connections", "1"])
            .output()
            .unwrap()
    };
    let bad = run("soon");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(err.contains("--start-in 'soon' is not a duration"), "{err}");
    for good in ["1m", "500ms", "2s", "3", "0s"] {
        let r = run(good);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{good}: {err}");
        assert!(err.contains("the loadgen on h1 failed"), "{good}: {err}");
    }
    std::fs::remove_dir_all(&out_dir).unwrap();
}
