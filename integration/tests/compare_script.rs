//! scripts/compare.sh end to end (quick mode): built-in and external servers side by side, a
//! corrupting server caught and reported without losing the others, and report.html checked
//! as a person sees it, rendered by headless Chromium.

use std::process::Command;

use ringecho_integration::repo;

/// The screenshot's window: docs/report.png has exactly this size.
const SHOT_W: u32 = 1400;
const SHOT_H: u32 = 2400;

/// A PNG's width and height, from its IHDR chunk.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.get(..8)? != b"\x89PNG\r\n\x1a\n" || png.get(12..16)? != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(png.get(16..20)?), be(png.get(20..24)?)))
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
}

/// Runs `scripts/compare.sh --quick --rounds 1 --backends epoll --out OUT --scenarios …`, the
/// scenarios and any further flags in `args`.
fn compare_sh(args: &[&str], out: &std::path::Path) -> std::process::Output {
    Command::new("bash")
        .current_dir(repo())
        .args([
            "scripts/compare.sh",
            "--quick",
            "--rounds",
            "1",
            "--backends",
            "epoll",
        ])
        .arg("--out")
        .arg(out)
        .arg("--scenarios")
        .args(args)
        .output()
        .unwrap()
}

/// An empty directory of this test process's own under the temporary directory.
fn fresh_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringecho-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A JSON file the run wrote, parsed; the test fails naming it when it is missing or bad.
fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} is not written: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn compare_sh_measures_external_servers_and_fails_a_corrupting_one() {
    let out = std::env::temp_dir().join(format!("ringecho-compare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let py = "python3 examples/python/echo.py --port {port}";
    let bad = "python3 examples/python/echo.py --port {port} --corrupt-every 500";
    let run = compare_sh(
        &[
            "c100x64,sweep",
            "--server",
            &format!("py={py}"),
            "--server",
            &format!("bad={bad}"),
        ],
        &out,
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(1),
        "a corrupting server fails the run:\n{stderr}"
    );
    let table = std::fs::read_to_string(out.join("table.txt")).expect("the table is written");
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{table}"))
            .to_string()
    };
    assert!(row("bad").contains("FAILED"), "{table}");
    assert!(row("bad").contains("bytes corrupted"), "{table}");
    assert!(!row("py").contains("FAILED"), "{table}");
    assert!(
        row("py").contains("—"),
        "no server counts, shown as —: {table}"
    );
    assert!(row("epoll").ends_with("agree"), "{table}");
    // The run went on for everyone: each server's sweep was made.
    for s in ["epoll", "py", "bad"] {
        assert!(
            out.join("runs").join(format!("sweep-{s}.json")).exists(),
            "{s} has no sweep"
        );
    }

    // What a person opens sits at the top; every run's files under runs/, each summary row
    // naming its own.
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".err") && !name.ends_with(".hgrm") && !name.ends_with("-1.json"),
            "{name} is a run's file at the top"
        );
    }
    let summary = read_json(&out.join("summary.json"));
    let rows = summary.as_array().expect("summary.json is a list of rows");
    for r in rows {
        let runs = r["runs"]
            .as_array()
            .unwrap_or_else(|| panic!("no runs: {r}"));
        assert!(!runs.is_empty(), "{r}");
        for f in runs {
            let f = f.as_str().unwrap();
            assert!(f.starts_with("runs/") && out.join(f).is_file(), "{f}");
        }
    }

    let report = out.join("report.html");
    let html = std::fs::read_to_string(&report).expect("report.html is written");
    assert!(html.contains("<svg"), "plots are inline");
    let Some(browser) = chromium() else {
        // compare.sh itself was checked above; only the rendering needs a browser.
        let what = "compare_sh_measures_external_servers_and_fails_a_corrupting_one (report.html in a browser)";
        ringecho_testkit::can_run(what, &[ringecho_testkit::Need::Tool("chromium")]);
        std::fs::remove_dir_all(&out).unwrap();
        return;
    };
    let url = format!("file://{}", report.display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
    ];
    let dom = Command::new(browser)
        .args(common)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(dom.status.success());
    let dom = String::from_utf8_lossy(&dom.stdout);
    let summary = read_json(&out.join("summary.json"));
    let epoll_rate = summary
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["backend"] == "epoll")
        .unwrap()["msgs_per_s"]
        .as_f64()
        .unwrap();
    for text in [
        "ringecho compare report",
        "epoll",
        "py",
        "bad",
        "FAILED",
        "Which figures to trust",
        "Latency against offered load",
        &format!("{epoll_rate:.0}"),
    ] {
        assert!(dom.contains(text), "the rendered page lacks {text:?}");
    }
    // The answer comes first: the CPU chart and a sentence per scenario, before the table.
    let chart = dom.find("Server CPU per echoed message, ×epoll");
    let sentence = dom.find("used the least CPU per message");
    let table = dom.find("Results (ratios to epoll");
    assert!(
        chart.is_some() && sentence.is_some() && chart < sentence && sentence < table,
        "the page does not open with the chart and the sentences"
    );
    let png = out.join("report.png");
    let shot = Command::new(browser)
        .args(common)
        .arg(format!("--window-size={SHOT_W},{SHOT_H}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "the screenshot is {size} bytes: a blank page?"
    );
    // The README's picture is this screenshot: RINGECHO_UPDATE_DOCS=1 writes it there, and
    // the one in the tree must have come from here (this window's size).
    let doc_png = repo().join("docs/report.png");
    if std::env::var_os("RINGECHO_UPDATE_DOCS").is_some() {
        std::fs::copy(&png, &doc_png).unwrap();
    }
    assert_eq!(
        png_size(&std::fs::read(&doc_png).unwrap()),
        Some((SHOT_W, SHOT_H)),
        "docs/report.png is not this test's screenshot: regenerate it with \
         RINGECHO_UPDATE_DOCS=1 cargo nextest run -E 'test(compare_sh_measures)'"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// `--paired`: after the interleaved rounds, each server runs beside the baseline, both at
/// once with a loadgen each; both runs are reports of their own (each with its server's CPU),
/// and paired.txt, paired.json and report.html give the ratio of the two. A server that
/// corrupts an echo fails its paired runs, saying so, and the run exits 1 with the others'
/// figures written.
#[test]
fn compare_sh_paired_runs_each_server_beside_the_baseline() {
    let out = std::env::temp_dir().join(format!("ringecho-paired-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let bad = "bad=python3 examples/python/echo.py --port {port} --corrupt-every 500";
    let run = Command::new("bash")
        .current_dir(repo())
        .args(["scripts/compare.sh", "--quick", "--rounds", "2", "--paired"])
        .args(["--backends", "epoll,multishot", "--scenarios", "c100x64"])
        .args(["--server", bad])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    for round in 1..=2 {
        let failed = format!("bad beside epoll in c100x64 round {round} FAILED");
        assert!(stderr.contains(&failed), "{stderr}");
    }
    for round in 1..=2 {
        for name in [
            format!("c100x64-epoll-{round}-beside-multishot.json"),
            format!("c100x64-multishot-{round}.json"),
        ] {
            let text = std::fs::read_to_string(out.join("runs/paired").join(&name)).unwrap();
            let report: serde_json::Value = serde_json::from_str(&text).unwrap();
            let cpu = report["server"]["cpu_us_per_msg"].as_f64().unwrap();
            assert!(cpu > 0.0, "{name}: {cpu}");
            assert_eq!(report["mismatches"].as_u64(), Some(0), "{name}");
        }
    }
    let rows = read_json(&out.join("paired.json"));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["server"], "multishot");
    assert_eq!(row["baseline"], "epoll");
    assert_eq!(row["rounds"], 2);
    let ratio = row["cpu_ratio"].as_f64().unwrap();
    let mine = row["server_cpu_us_per_msg"].as_f64().unwrap();
    let base = row["baseline_cpu_us_per_msg"].as_f64().unwrap();
    assert!(
        ratio.is_finite() && ratio > 0.0 && mine > 0.0 && base > 0.0,
        "{row}"
    );
    let table = std::fs::read_to_string(out.join("paired.txt")).unwrap();
    assert!(table.contains("side by side with epoll") && table.contains("multishot"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("Side by side (--paired)"),
        "report.html has no paired section"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// A backend the server does not know is a usage error before anything runs, in the
/// server's own words.
#[test]
fn compare_sh_refuses_an_unknown_backend_up_front() {
    let out = std::env::temp_dir().join(format!("ringecho-badbackend-{}", std::process::id()));
    let run = Command::new("bash")
        .current_dir(repo())
        .args([
            "scripts/compare.sh",
            "--quick",
            "--backends",
            "epoll,iouring",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--backends iouring") && stderr.contains("invalid value 'iouring'"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing ran");
}

/// The capped scenarios: the server runs in a cgroup holding it to `--cap` of a core, so it,
/// not the loadgen, is what saturates. The quota is the kernel's to enforce, so the server's
/// CPU over the window stays under it (plus a period of slack); without a writable cgroup
/// CPU controller the scenario is skipped with the reason, never run uncapped.
#[test]
fn compare_sh_caps_the_server() {
    let out = std::env::temp_dir().join(format!("ringecho-cap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = compare_sh(&["cap1000x64", "--cap", "0.2"], &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let machine = std::fs::read_to_string(out.join("machine.txt")).unwrap();
    if !machine.contains("cap: the server at 0.2") {
        assert!(
            stderr.contains("cap1000x64 skipped: no writable cgroup CPU controller"),
            "neither capped nor skipped with a reason:\n{stderr}"
        );
        // compare.sh said why; the cap itself went unchecked here, and that is reported.
        ringecho_testkit::can_run(
            "compare_sh_caps_the_server (the cap; compare.sh skipped it with its reason)",
            &[ringecho_testkit::Need::Root],
        );
        return;
    }
    assert!(run.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("runs/cap1000x64-epoll-1.json")).unwrap(),
    )
    .unwrap();
    let server = &report["server"];
    let cpu_s = server["user_s"].as_f64().unwrap() + server["sys_s"].as_f64().unwrap();
    let window_s = report["elapsed_s"].as_f64().unwrap();
    assert!(
        cpu_s <= 0.2 * window_s * 1.25 + 0.01,
        "the server used {cpu_s:.3} s of CPU in {window_s:.3} s under a 0.2 cap"
    );
    assert!(report["messages_total"].as_u64().unwrap() > 0);
    assert!(
        !std::fs::read_dir("/sys/fs/cgroup/cpu")
            .into_iter()
            .flatten()
            .chain(std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten())
            .flatten()
            .any(|e| e.file_name().to_string_lossy()
                == format!("ringecho-cap-{}", run_pid(&machine))),
        "the cgroup is removed at exit"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// The compare.sh process id, from the cgroup path it wrote into machine.txt.
fn run_pid(machine: &str) -> String {
    machine
        .lines()
        .find_map(|l| l.split("ringecho-cap-").nth(1))
        .map(|rest| rest.trim_end_matches(')').to_string())
        .unwrap_or_default()
}

/// `--profile`: one more short run per server under perf, its CPU per message split by
/// category; the categories add up to the whole, and the report draws them. Without perf the
/// profile is skipped with the reason, in the report too.
#[test]
fn compare_sh_profiles_each_server() {
    let out = std::env::temp_dir().join(format!("ringecho-profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = compare_sh(&["c100x64", "--profile", "--no-syscalls"], &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let text = std::fs::read_to_string(out.join("profile.txt")).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    if !ringecho_testkit::can_run(
        "compare_sh_profiles_each_server (the profile itself)",
        &[
            ringecho_testkit::Need::Tool("perf"),
            ringecho_testkit::Need::Root,
        ],
    ) {
        assert!(
            text.starts_with("--profile skipped") || text.contains("epoll"),
            "{text}"
        );
        std::fs::remove_dir_all(&out).unwrap();
        return;
    }
    let profiles = read_json(&out.join("profile.json"));
    let epoll = &profiles[0];
    assert_eq!(epoll["server"], "epoll", "{profiles}");
    assert!(epoll["samples"].as_u64().unwrap() > 100, "{epoll}");
    let total: f64 = epoll["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[2].as_f64().unwrap())
        .sum();
    let cpu = epoll["cpu_us_per_msg"].as_f64().unwrap();
    assert!(
        (total - cpu).abs() < 1e-6 * cpu.max(1.0),
        "{total} vs {cpu}"
    );
    assert!(
        text.contains("TCP/IP and skb") && text.contains("epoll"),
        "{text}"
    );
    assert!(html.contains("Where the time goes") && html.contains("I/O interface"));
    std::fs::remove_dir_all(&out).unwrap();
}

/// The main job as an ordinary user: the syscall pass, `--profile` and the capped scenario
/// need what such a user lacks (perf's tracepoints and kernel samples, a cgroup), so each is
/// skipped with one line saying how to allow it, and the run still exits 0 with every row
/// measured and report.html written. As root the test drops to `nobody` itself (runuser),
/// running copies of the binaries from a directory that user can read.
#[test]
fn an_ordinary_users_compare_skips_what_needs_root_and_succeeds() {
    let dir = std::env::temp_dir().join(format!("ringecho-ordinary-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bin = repo().join("target/release");
    for b in ["ringecho-perf", "ringecho-server", "ringecho-loadgen"] {
        std::fs::copy(bin.join(b), dir.join(b)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = dir.join("results");
    let root = ringecho_testkit::is_root();
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"])
            .arg(dir.join("ringecho-perf"));
        c
    } else {
        Command::new(dir.join("ringecho-perf"))
    };
    let run = cmd
        .current_dir(&dir)
        .env("HOME", &dir)
        .args(["compare", "--backends", "epoll-loop,multishot"])
        .args(["--scenarios", "c100x64,cap1000x64", "--rounds", "1"])
        .args(["--duration", "300ms", "--warmup", "100ms", "--profile"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "exit {:?}:\n{stderr}", run.status);
    let table = std::fs::read_to_string(out.join("table.txt")).expect("table.txt");
    assert!(!table.contains("FAILED"), "{table}\n{stderr}");
    for b in ["epoll-loop", "multishot"] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("c100x64") && l.contains(b)),
            "{table}"
        );
    }
    assert!(out.join("report.html").is_file(), "{stderr}");
    // Unprivileged, the cgroup cannot be made: one line, and the scenario's rows are absent.
    if root {
        assert!(stderr.contains("cap1000x64 skipped"), "{stderr}");
    }
    // Whatever perf could not do was skipped with a way to allow it, never a FAILED row.
    for line in stderr.lines().filter(|l| l.contains("skipped")) {
        assert!(
            line.contains("run as root") || line.contains("not installed"),
            "a skip that does not say how to allow it: {line}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// compare reads each server's socket options from one socket it accepted: TCP_NODELAY on
/// for every built-in backend, off for a server that leaves Nagle on (as liburing's example
/// does; here the Python server with --nagle), which the table flags against the baseline.
/// Reading another process's socket takes ptrace rights: root.
#[test]
fn compare_sh_shows_each_servers_socket_options() {
    if !ringecho_testkit::can_run(
        "compare_sh_shows_each_servers_socket_options",
        &[ringecho_testkit::Need::Root],
    ) {
        return;
    }
    let out = std::env::temp_dir().join(format!("ringecho-sockopts-{}", std::process::id()));
    let run = Command::new("bash")
        .current_dir(repo())
        .args([
            "scripts/compare.sh",
            "--quick",
            "--rounds",
            "1",
            "--no-syscalls",
        ])
        .args(["--backends", "epoll-loop,multishot,epoll,uring"])
        .args([
            "--server",
            "nagle=python3 examples/python/echo.py --port {port} --nagle",
        ])
        .args([
            "--scenarios",
            "c100x64",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let table = std::fs::read_to_string(out.join("table.txt")).unwrap();
    let line = |name: &str| {
        table
            .lines()
            .skip_while(|l| !l.starts_with("socket options"))
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no socket options line for {name}:\n{table}"))
            .to_string()
    };
    for b in ["epoll-loop", "multishot", "epoll", "uring"] {
        assert!(line(b).contains("TCP_NODELAY on"), "{b}: {table}");
    }
    assert!(line("nagle").contains("TCP_NODELAY off"), "{table}");
    assert!(line("nagle").contains("differs from epoll-loop"), "{table}");
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(summary.contains("\"nodelay\": false"), "{summary}");
    let _ = std::fs::remove_dir_all(&out);
}

/// The map on a tiny grid with short windows: one record per cell and server, the baseline's
/// A/A run in every round, a server that corrupts echoes FAILED in its cells with the reason
/// (a `--server` row: the run exits 1) while the others' cells are called, and map.txt,
/// map.svg and report.html's heat maps written. A bad axis value is refused before anything
/// runs.
#[test]
fn map_runs_every_cell_and_fails_a_corrupting_server_in_its_cells() {
    let out = fresh_dir("map");
    let perf = repo().join("target/release/ringecho-perf");
    let bad = "bad=python3 examples/python/echo.py --port {port} --corrupt-every 500";
    let run = Command::new(&perf)
        .current_dir(repo())
        .args(["map", "--backends", "epoll-loop,multishot", "--server", bad])
        .args(["--payload", "64,1024", "--connections", "4"])
        .args(["--rounds", "3", "--duration", "300ms", "--warmup", "100ms"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(1),
        "a --server row's failure fails the map:\n{stderr}"
    );
    assert!(
        stderr.starts_with("map: 2 cells × 4 runs × 3 rounds"),
        "{stderr}"
    );
    let map = read_json(&out.join("map.json"));
    assert_eq!(map["complete"], true);
    let records = map["records"].as_array().unwrap();
    assert_eq!(
        records.len(),
        2 * 3,
        "two cells × three servers: {records:?}"
    );
    for r in records {
        let server = r["server"].as_str().unwrap();
        if server == "bad" {
            let why = r["failure"].as_str().unwrap_or_default();
            assert!(why.contains("corrupted"), "{r}");
        } else {
            assert!(r.get("failure").is_none(), "{r}");
            assert_eq!(r["rounds"], 3, "{r}");
            assert!(r["server_cpu_us_per_msg"].as_f64().unwrap() > 0.0, "{r}");
        }
        if server == "epoll-loop" {
            assert!(
                r["aa_spread"].is_array(),
                "the baseline's A/A pair ran: {r}"
            );
        }
        if server == "multishot" {
            let c = &r["contrasts"][0];
            assert_eq!(c["over"], "epoll-loop", "{r}");
            assert!(c["call"].is_string(), "called by the rule: {r}");
        }
    }
    let text = std::fs::read_to_string(out.join("map.txt")).unwrap();
    assert!(text.contains("multishot ×epoll-loop"), "{text}");
    assert!(
        text.contains("bad ×epoll-loop") && text.contains("FAILED"),
        "{text}"
    );
    let svg = std::fs::read_to_string(out.join("map.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("FAILED"), "{svg}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("The map") && html.contains("FAILED cells"),
        "report.html"
    );

    // Refused before anything runs: a payload too small, a grid past its time limit.
    for (args, says) in [
        (&["--payload", "8"][..], "under 16 B"),
        (
            &["--payload", "64,1024,16384", "--time-limit", "1s"][..],
            "--time-limit",
        ),
    ] {
        let dir = out.join("refused");
        let run = Command::new(&perf)
            .current_dir(repo())
            .args(["map", "--backends", "epoll-loop"])
            .args(args)
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!dir.exists(), "nothing ran: {args:?}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// `compare --threads 1,2` on cores the server and the loadgen share: two points per
/// backend, each a row in summary.json with its thread count, the two-thread server's
/// connections spread over both threads (the per-thread metric read back), the scaling
/// section and the sharing said in table.txt; a bad CPU list refused up front.
#[test]
fn compare_threads_draws_a_scaling_curve_per_backend() {
    let out = fresh_dir("scaling");
    let perf = repo().join("target/release/ringecho-perf");
    let run = Command::new(&perf)
        .current_dir(repo())
        .args(["compare", "--backends", "epoll-loop,multishot"])
        .args(["--scenarios", "c100x64", "--threads", "1,2"])
        .args(["--server-cpus", "0-1", "--loadgen-cpus", "0-1"])
        .args(["--rounds", "1", "--duration", "300ms", "--warmup", "100ms"])
        .arg("--no-syscalls")
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let summary = read_json(&out.join("summary.json"));
    let rows = summary.as_array().expect("summary.json is a list of rows");
    for backend in ["epoll-loop", "multishot"] {
        let mut threads: Vec<u64> = rows
            .iter()
            .filter(|r| r["backend"] == backend)
            .filter_map(|r| r["server_threads"].as_u64())
            .collect();
        threads.sort_unstable();
        assert_eq!(threads, vec![1, 2], "{backend}: {rows:?}");
        let two = rows
            .iter()
            .find(|r| r["backend"] == backend && r["server_threads"] == 2)
            .unwrap();
        let b = &two["accepted_balance"];
        let (min, max) = (b["min"].as_u64().unwrap(), b["max"].as_u64().unwrap());
        assert!(
            min > 0 && max < 100 && min <= max,
            "both threads accepted: {two}"
        );
    }
    let table = std::fs::read_to_string(out.join("table.txt")).unwrap();
    assert!(table.contains("Scaling (--threads)"), "{table}");
    assert!(
        table.contains("share"),
        "the shared cores are said: {table}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Scaling with server threads"));

    let bad = Command::new(&perf)
        .args(["compare", "--server-cpus", "0-x", "--out"])
        .arg(out.join("bad"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("CPU list"));
    let _ = std::fs::remove_dir_all(&out);
}

/// A map interrupted by SIGINT keeps the cells it finished: exit 130, map.json marked
/// incomplete with those cells' records, and report.html drawing them.
#[test]
fn an_interrupted_map_keeps_the_cells_it_finished() {
    let out = fresh_dir("map-int");
    std::fs::create_dir_all(&out).unwrap();
    let log = out.join("stderr.txt");
    let mut child = Command::new(repo().join("target/release/ringecho-perf"))
        .current_dir(repo())
        .args([
            "map",
            "--backends",
            "epoll-loop",
            "--payload",
            "64,128,256,512",
        ])
        .args(["--connections", "4", "--rounds", "1", "--duration", "300ms"])
        .args(["--warmup", "100ms", "--out"])
        .arg(out.join("map"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Bounded: the second cell starts within a minute, or the test fails saying so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("map cell 2/")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the map never reached its second cell"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    let map = read_json(&out.join("map/map.json"));
    assert_eq!(map["complete"], false);
    let cells: Vec<&str> = map["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["cell"].as_str())
        .collect();
    assert!(
        cells.contains(&"c4.p64.f1.mall"),
        "the first cell is kept: {cells:?}"
    );
    assert!(!cells.contains(&"c4.p512.f1.mall"), "{cells:?}");
    let html = std::fs::read_to_string(out.join("map/report.html")).unwrap();
    assert!(html.contains("interrupted"), "report.html says so");
    let _ = std::fs::remove_dir_all(&out);
}
