//! The Kubernetes recipe without a cluster: deploy/k8s/ringecho.yaml validated against the
//! Kubernetes API schema (kubernetes-validate, from PyPI), then every pod's command run as
//! written, the server's in one network namespace and each loadgen pod's (its init container
//! first) in a namespace of its own, with `JOB_COMPLETION_INDEX` set, `ringecho-server`
//! resolving to the server's namespace, and the termination message captured; then the
//! manifest's merge recipe with the server's counters scraped before and after.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringecho_integration::{loadgen_exe, repo, server_exe, sh, Hosts, SERVER_IP};
use ringecho_testkit::{can_run, Need};
use serde_json::Value;

fn manifest() -> PathBuf {
    repo().join("deploy/k8s/ringecho.yaml")
}

/// The manifest's documents, as JSON (PyYAML comes with kubernetes-validate).
fn documents() -> Vec<Value> {
    let manifest = manifest();
    let json = sh(&[
        "python3",
        "-c",
        "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        manifest.to_str().unwrap(),
    ]);
    serde_json::from_str(&json).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("the manifest has no {kind}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// PATH with this build's binaries first: the pods' commands name them bare, as the image has
/// them on its PATH.
fn path_env() -> String {
    let dir = server_exe().parent().unwrap().to_path_buf();
    assert_eq!(loadgen_exe().parent().unwrap(), dir);
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The server's /metrics, fetched from inside its namespace.
fn scrape(ns: &str) -> String {
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "python3",
        "-c",
        "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())",
        &format!("http://{SERVER_IP}:9000/metrics"),
    ])
}

fn active(metrics: &str) -> u64 {
    let name = ringecho_common::metric::CONNECTIONS_ACTIVE.name;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .expect(name)
}

/// `/etc/netns/NS/hosts`, which `ip netns exec NS` mounts over /etc/hosts: the cluster DNS
/// answer for the Service name. Removed on drop.
struct ServiceName(PathBuf);

impl ServiceName {
    fn new(ns: &str) -> Self {
        let dir = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("hosts"),
            format!("127.0.0.1 localhost\n{SERVER_IP} ringecho-server\n"),
        )
        .unwrap();
        ServiceName(dir)
    }
}

impl Drop for ServiceName {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child killed when dropped (a failed assertion must not leave it running).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn k8s_manifest_is_valid_against_the_api_schema() {
    if !can_run(
        "k8s_manifest_is_valid_against_the_api_schema",
        &[Need::Tool("kubernetes-validate")],
    ) {
        return;
    }
    let out = Command::new("kubernetes-validate")
        .args(["--strict"])
        .arg(manifest())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches(" passed ").count(), 3, "{text}");
    // What the recipe relies on, beyond the schema.
    let docs = documents();
    let server = &find(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(server["imagePullPolicy"], "IfNotPresent");
    assert!(!server["image"].as_str().unwrap().ends_with(":latest"));
    assert_eq!(server["readinessProbe"]["httpGet"]["path"], "/metrics");
    let job = find(&docs, "Job");
    assert_eq!(job["metadata"]["labels"]["app"], "ringecho-loadgen");
    assert_eq!(
        find(&docs, "Service")["metadata"]["labels"]["app"],
        "ringecho-server"
    );
    let pod = &job["spec"]["template"]["spec"];
    assert!(pod["initContainers"][0]["command"].is_array());
    assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
    let header = std::fs::read_to_string(manifest()).unwrap();
    assert!(
        header.contains("FOUR schedulable"),
        "the node count is stated"
    );
}

#[test]
fn k8s_pods_run_as_written_and_merge_to_the_servers_counts() {
    let me = "k8s_pods_run_as_written_and_merge_to_the_servers_counts";
    if !can_run(
        me,
        &[
            Need::Root,
            Need::Tool("ip"),
            Need::Tool("unshare"),
            Need::Tool("kubernetes-validate"),
        ],
    ) {
        return;
    }
    let docs = documents();
    let server_cmd =
        strings(&find(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["command"]);
    let job = find(&docs, "Job");
    let pods = job["spec"]["completions"].as_u64().unwrap() as usize;
    let pod = &job["spec"]["template"]["spec"];
    let init_cmd = strings(&pod["initContainers"][0]["command"]);
    let lg = &pod["containers"][0];
    let lg_cmd = strings(&lg["command"]);
    let term_path = lg["terminationMessagePath"]
        .as_str()
        .unwrap_or("/dev/termination-log");
    assert_eq!(pods, 3, "the namespaces stand for three loadgen nodes");

    let hosts = Hosts::new("k8");
    let names: Vec<ServiceName> = hosts.names[1..]
        .iter()
        .map(|n| ServiceName::new(n))
        .collect();
    let work = std::env::temp_dir().join(format!("ringecho-k8s-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let path = path_env();

    // The server pod. Its own namespace stands for its pod network; 0.0.0.0 as written.
    let _server = Running(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &hosts.names[0],
                "env",
                &format!("PATH={path}"),
            ])
            .args(&server_cmd)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The loadgen pods' init containers, as written, wait for it; then the readiness probe's
    // endpoint is scraped, as the recipe does before starting the Job.
    for ns in &hosts.names[1..] {
        let out = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(&init_cmd)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "init container: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let before = work.join("server-before.prom");
    std::fs::write(&before, scrape(&hosts.names[0])).unwrap();

    // The Job's pods: START_AT as the recipe's sed sets it (a few seconds ahead here, not 60),
    // each with its index; stdout is `kubectl logs`, the termination message a file of its own.
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 5;
    let assert_template = lg["env"][0]["value"].as_str().unwrap();
    assert_eq!(assert_template, "@START_AT@");
    let mut running = Vec::new();
    for (i, ns) in hosts.names[1..].iter().enumerate() {
        let dir = work.join(format!("pod{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let term_dir = Path::new(term_path).parent().unwrap();
        // A private mount namespace: the termination message's directory is the pod's own.
        let script = format!(
            "mkdir -p {td} && mount --bind \"$0\" {td} && exec \"$@\"",
            td = term_dir.display()
        );
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "unshare", "-m", "sh", "-c", &script])
            .arg(&dir)
            .args(&lg_cmd)
            .env("PATH", &path)
            .env("START_AT", start_at.to_string())
            .env("JOB_COMPLETION_INDEX", i.to_string())
            .stdout(std::fs::File::create(work.join(format!("lg{i}.hlog"))).unwrap())
            .spawn()
            .unwrap();
        running.push(Running(child));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, mut r) in running.into_iter().enumerate() {
        let status = loop {
            if let Some(s) = r.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "loadgen pod {i} ran past 120 s");
            std::thread::sleep(Duration::from_millis(200));
        };
        let msg = std::fs::read_to_string(
            work.join(format!("pod{i}"))
                .join(Path::new(term_path).file_name().unwrap()),
        )
        .unwrap_or_default();
        assert!(
            status.success(),
            "loadgen pod {i} failed; its termination message:\n{msg}"
        );
        assert!(
            msg.contains("ringecho-loadgen:"),
            "pod {i}'s summary is its termination message: {msg:?}"
        );
    }
    // The server counts each close a moment after the loadgen made it.
    let settle = Instant::now() + Duration::from_secs(10);
    let after_text = loop {
        let m = scrape(&hosts.names[0]);
        if active(&m) == 0 || Instant::now() > settle {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let after = work.join("server-after.prom");
    std::fs::write(&after, after_text).unwrap();

    // The recipe's merge, as written at the top of the manifest.
    let logs: Vec<PathBuf> = (0..pods)
        .map(|i| work.join(format!("lg{i}.hlog")))
        .collect();
    let out = Command::new(loadgen_exe())
        .args(["merge", "--expect", "3", "--server-before"])
        .arg(&before)
        .arg("--server-after")
        .arg(&after)
        .args(&logs)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(": agrees)"), "{text}");
    for i in 0..pods {
        assert!(text.contains(&format!("lg{i}")), "host lg{i} in {text}");
    }
    drop(names);
    std::fs::remove_dir_all(&work).unwrap();
}
