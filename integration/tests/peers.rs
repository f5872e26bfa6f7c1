//! scripts/peers.sh where the peers cannot be fetched (as on a machine without access to
//! their hosts): one clear line each, nothing on stdout for compare.sh to run, exit 0, so a
//! comparison goes on without them.

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
