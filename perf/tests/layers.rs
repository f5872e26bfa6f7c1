//! The crate's layering, kept true: `analysis/` (functions of data) imports neither the
//! running nor the rendering layer and touches no process or file; `render/` does not import
//! the running layer; the files below the layers import none of them (`results.rs` only the
//! analysis it stores); and no built-in backend is named in perf's code outside the 2×2's
//! data in `analysis/grid.rs`.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every .rs file under `dir`, relative to src/.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p.strip_prefix(src()).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

/// A file's code: its unit tests (a trailing `#[cfg(test)]` module) and comments left out.
fn code(rel: &Path) -> String {
    let text = std::fs::read_to_string(src().join(rel)).unwrap();
    let body = text.split("\n#[cfg(test)]").next().unwrap();
    body.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn layer(rel: &Path) -> &str {
    match rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap()
    {
        "analysis" => "analysis",
        "render" => "render",
        "run" => "run",
        _ => "base",
    }
}

/// What `rel`'s code may not mention, by its layer.
fn forbidden(rel: &Path) -> &'static [&'static str] {
    match layer(rel) {
        "analysis" => &[
            "crate::run",
            "crate::render",
            "crate::results",
            "std::fs",
            "std::process",
            "std::net",
        ],
        "render" => &["crate::run", "std::process"],
        "run" => &[],
        _ if rel == Path::new("results.rs") => &["crate::run", "crate::render"],
        _ if rel == Path::new("main.rs") => &[],
        _ => &["crate::run", "crate::render", "crate::analysis"],
    }
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let mut broken = Vec::new();
    let all = files(&src());
    assert!(
        all.iter().any(|f| layer(f) == "analysis") && all.iter().any(|f| layer(f) == "render"),
        "the layers' folders are there: {all:?}"
    );
    for f in &all {
        let c = code(f);
        for word in forbidden(f) {
            if c.contains(word) {
                broken.push(format!("{} uses {word}", f.display()));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn no_file_name_is_used_twice() {
    let all = files(&src());
    let mut names: Vec<_> = all
        .iter()
        .map(|f| f.file_name().unwrap().to_owned())
        .filter(|n| n != "mod.rs")
        .collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "a file name repeats in {all:?}");
}

#[test]
fn the_backends_are_named_only_in_the_2x2s_data() {
    const NAMES: [&str; 4] = ["\"epoll-loop\"", "\"multishot\"", "\"uring\"", "\"epoll\""];
    let grid = Path::new("analysis/grid.rs");
    let text = code(grid);
    let start = text
        .find("pub const INTERFACES")
        .expect("the 2×2's data starts with INTERFACES");
    let end = text
        .find("fn default_baseline")
        .expect("the 2×2's data ends before default_baseline");
    assert!(NAMES.iter().all(|n| text[start..end].contains(n)));
    let mut found = Vec::new();
    for f in files(&src()) {
        let c = if f == grid {
            format!("{}{}", &text[..start], &text[end..])
        } else {
            code(&f)
        };
        for n in NAMES {
            for (i, line) in c.lines().enumerate() {
                if line.contains(n) {
                    found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
        for word in ["epoll-loop", "multishot"] {
            if c.contains(word) {
                found.push(format!("{} names {word}", f.display()));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
