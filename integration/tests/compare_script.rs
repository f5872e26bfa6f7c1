//! scripts/compare.sh end to end (quick mode): built-in and external servers side by side, a
//! corrupting server caught and reported without losing the others, and report.html checked
//! as a person sees it, rendered by headless Chromium.

use std::process::Command;

use ringecho_integration::repo;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
}

#[test]
fn compare_sh_measures_external_servers_and_fails_a_corrupting_one() {
    let out = std::env::temp_dir().join(format!("ringecho-compare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let py = "python3 examples/python/echo.py --port {port}";
    let bad = "python3 examples/python/echo.py --port {port} --corrupt-every 500";
    let run = Command::new("bash")
        .current_dir(repo())
        .args([
            "scripts/compare.sh",
            "--quick",
            "--scenarios",
            "c100x64,sweep",
            "--rounds",
            "1",
            "--backends",
            "epoll",
            "--server",
            &format!("py={py}"),
            "--server",
            &format!("bad={bad}"),
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
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
            out.join(format!("sweep-{s}.json")).exists(),
            "{s} has no sweep"
        );
    }

    let report = out.join("report.html");
    let html = std::fs::read_to_string(&report).expect("report.html is written");
    assert!(html.contains("<svg"), "plots are inline");
    let Some(browser) = chromium() else {
        panic!("headless Chromium is needed to check report.html (scripts/test.sh installs it)");
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
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
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
    let png = out.join("report.png");
    let shot = Command::new(browser)
        .args(common)
        .arg("--window-size=1400,2400")
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
    std::fs::remove_dir_all(&out).unwrap();
}
