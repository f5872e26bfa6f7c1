//! Beyond one machine: the server in one network namespace, three loadgens in three others
//! ("hosts" with addresses of their own, joined by veth pairs and a bridge), started together
//! by scripts/fleet.sh (with `ip netns exec` standing in for ssh) and merged: the totals must
//! equal the server's counter deltas exactly, each namespace's kernel counters must agree with
//! its loadgen, and a run with a loadgen killed halfway is reported incomplete.

use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use ringecho_integration::{loadgen_exe, repo, server_exe, sh, Hosts, SERVER_IP};

/// The server process, killed when dropped (a failed assertion must not leave it running).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(ns: &str) -> Server {
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(server_exe())
        .args([
            "--backend",
            "multishot",
            "--threads",
            "2",
            "--listen",
            &format!("{SERVER_IP}:7000"),
            "--metrics",
            &format!("{SERVER_IP}:7001"),
        ])
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = Command::new("ip")
            .args(["netns", "exec", ns, "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{SERVER_IP}/7001"))
            .output()
            .unwrap();
        if probe.status.success() {
            return server;
        }
        assert!(Instant::now() < deadline, "the server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fleet(hosts: &Hosts, out: &std::path::Path, host_args: &[String], kill: Option<&str>) -> Output {
    let mut cmd = Command::new("bash");
    cmd.current_dir(repo())
        .arg("scripts/fleet.sh")
        .args(["--ssh", "ip netns exec", "--start-in", "3"])
        .args(["--loadgen", loadgen_exe().to_str().unwrap()])
        .args([
            "--server-metrics",
            &format!("http://{SERVER_IP}:7001/metrics"),
        ])
        .args([
            "--scrape-prefix",
            &format!("ip netns exec {}", hosts.names[0]),
        ])
        .arg("--out")
        .arg(out);
    for h in host_args {
        cmd.args(["--host", h]);
    }
    cmd.args([
        "--",
        "--addr",
        &format!("{SERVER_IP}:7000"),
        "--connections",
        "60",
        "--duration",
        "2s",
        "--churn",
        "50",
        "--threads",
        "1",
    ]);
    match kill {
        None => cmd.output().unwrap(),
        Some(victim) => {
            let child = cmd
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // Halfway through the measured window: start-in 3 s, then 2 s of load.
            std::thread::sleep(Duration::from_millis(4000));
            sh(&["pkill", "-KILL", "-f", &format!("tag host={victim}")]);
            child.wait_with_output().unwrap()
        }
    }
}

/// The report a host's interval log carries in its counts line.
fn host_report(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("#ringecho-counts "))
        .unwrap_or_else(|| panic!("{} has no counts line", path.display()));
    serde_json::from_str(json).unwrap()
}

#[test]
fn three_hosts_start_together_and_merge_to_the_servers_counts() {
    if !ringecho_testkit::can_run(
        "three_hosts_start_together_and_merge_to_the_servers_counts",
        &[
            ringecho_testkit::Need::Root,
            ringecho_testkit::Need::Tool("ip"),
        ],
    ) {
        return;
    }
    let hosts = Hosts::new("re");
    let _server = start_server(&hosts.names[0]);
    let out = std::env::temp_dir().join(format!("ringecho-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let l = &hosts.names[1..];
    let host_args = vec![
        format!("{}=--rst-share 0", l[0]),
        format!("{}=--rst-share 0.3", l[1]),
        format!("{}=--rst-share 1", l[2]),
    ];
    let run = fleet(&hosts, &out.join("full"), &host_args, None);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("agrees"),
        "merge must agree with the server: {stdout}"
    );
    assert!(stdout.contains("server cpu"), "{stdout}");
    let merged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("full/merged.json")).unwrap())
            .unwrap();
    let mut starts = Vec::new();
    for (i, name) in l.iter().enumerate() {
        let r = host_report(&out.join(format!("full/{name}.hlog")));
        assert_eq!(r["tags"]["host"], name.as_str());
        assert_eq!(r["mismatches"], 0);
        // Each namespace's kernel sent exactly the RSTs its loadgen counted.
        let rst = r["closes"]["rst"].as_u64().unwrap();
        assert_eq!(r["kernel"]["out_rsts"].as_u64(), Some(rst), "{name}: {r}");
        if i == 0 {
            assert_eq!(rst, 0);
        }
        if i == 2 {
            assert_eq!(r["closes"]["fin"], 0);
        }
        assert!(r["start_at"]["late_s"].as_f64().unwrap() < 1.0, "{r}");
        starts.push(r["start_at"]["unix_s"].as_f64().unwrap());
    }
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "one start for all");
    assert!(
        merged["messages_total"].as_u64().unwrap() > 1000,
        "{merged}"
    );

    // One loadgen killed halfway: merge says the run is incomplete, and exits 1.
    let run = fleet(&hosts, &out.join("cut"), &host_args, Some(&l[1]));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("INCOMPLETE"), "{stdout}");
    assert!(!out.join(format!("cut/{}.hlog", l[1])).exists());

    std::fs::remove_dir_all(&out).unwrap();
}
