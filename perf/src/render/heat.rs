//! map.txt and the heat maps (map.svg, docs/map.svg, report.html): one grid per contrast and
//! slice, each cell coloured by the one rule alone — a winner only outside the cell's A/A
//! noise, level otherwise — never by a ratio inside the noise.
//!
//! The SVG is written by hand: a grid of rectangles with a label each, a few dozen lines that
//! plotters' chart layer (axes, ranges, series) would only get in the way of.

use std::fmt::Write as _;

use crate::analysis::grid::Call;
use crate::analysis::map::Slice;
use crate::analysis::map::{HeatCell, MapFile};

/// What a called cell's marker means, said once for the text and the legend.
const LEGEND: &str = "server CPU per message over the other server's, median of the rounds \
                      (per connection where each carries one message: the same ratio); \
                      `<` cheaper and a winner, `>` dearer and a winner (the rounds' spread \
                      wholly outside the cell's A/A noise), `=` level, `?` too few rounds to \
                      call";

/// The marker of a called cell.
fn marker(ratio: f64, call: Call) -> &'static str {
    match call {
        Call::Winner if ratio < 1.0 => "<",
        Call::Winner => ">",
        Call::Level => "=",
        Call::TooFewRounds => "?",
    }
}

/// map.txt: how it was made, then per contrast and slice a table of ratios and calls, then
/// every failure with its reason.
pub fn text(m: &MapFile) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "map: {}", m.command);
    let _ = writeln!(
        s,
        "{} · {} · {} rounds of {} (+{} warm-up) per cell, servers interleaved{}",
        m.date,
        m.machine,
        m.rounds,
        m.duration,
        m.warmup,
        if m.complete {
            String::new()
        } else {
            " · INTERRUPTED: the cells that finished".into()
        }
    );
    let _ = writeln!(s, "{LEGEND}\n");
    for (server, over) in m.pairs() {
        for slice in &m.slices {
            table(&mut s, m, slice, &server, &over);
        }
    }
    let mut failures: Vec<String> = m
        .records
        .iter()
        .filter_map(|r| {
            r.failure
                .as_ref()
                .map(|why| format!("  {} in {}: {why}", r.server, r.cell))
        })
        .collect();
    failures.dedup();
    if !failures.is_empty() {
        let _ = writeln!(s, "FAILED cells:\n{}", failures.join("\n"));
    }
    s
}

fn table(s: &mut String, m: &MapFile, slice: &Slice, server: &str, over: &str) {
    let _ = writeln!(s, "{server} ×{over} — {}", slice.name);
    let corner = format!("{} \\ {}", slice.y.label(), slice.x.label());
    let w = 14;
    let first = corner.len().max(12);
    let _ = write!(s, "{corner:<first$}");
    for &x in &slice.xs {
        let _ = write!(s, "{:>w$}", slice.x.show(x));
    }
    s.push('\n');
    for &y in &slice.ys {
        let _ = write!(s, "{:<first$}", slice.y.show(y));
        for &x in &slice.xs {
            let cell = match m.heat(&slice.cell(x, y), server, over) {
                HeatCell::Called { ratio, call, .. } => {
                    format!("{ratio:.2} {}", marker(ratio, call))
                }
                HeatCell::Failed(_) => "FAILED".into(),
                HeatCell::Missing => "—".into(),
            };
            let _ = write!(s, "{cell:>w$}");
        }
        s.push('\n');
    }
    s.push('\n');
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const CELL_W: usize = 104;
const CELL_H: usize = 44;
const LEFT: usize = 130;
const TOP: usize = 56;

/// The fill and text colour of a heat cell.
fn colours(h: &HeatCell) -> (&'static str, &'static str) {
    match h {
        HeatCell::Called {
            ratio,
            call: Call::Winner,
            ..
        } => {
            let strong = (1.0 - ratio).abs() >= 0.2;
            match (*ratio < 1.0, strong) {
                (true, true) => ("#1b7837", "#ffffff"),
                (true, false) => ("#a6dba0", "#000000"),
                (false, true) => ("#b2182b", "#ffffff"),
                (false, false) => ("#f4a582", "#000000"),
            }
        }
        HeatCell::Called {
            call: Call::Level, ..
        } => ("#e0e0e0", "#000000"),
        HeatCell::Called { .. } => ("#f7f7f7", "#555555"),
        HeatCell::Failed(_) => ("#303030", "#ffffff"),
        HeatCell::Missing => ("#ffffff", "#999999"),
    }
}

/// The heat maps of `m` as one SVG: per contrast, one panel per slice, side by side.
pub fn svg(m: &MapFile) -> String {
    let pairs = m.pairs();
    let panel_w = |sl: &Slice| LEFT + sl.xs.len() * CELL_W + 24;
    let panel_h = |sl: &Slice| TOP + sl.ys.len() * CELL_H + 40;
    let row_w: usize = m.slices.iter().map(panel_w).sum();
    let row_h = m.slices.iter().map(panel_h).max().unwrap_or(0) + 28;
    let width = row_w.max(900);
    let height = 92 + pairs.len() * row_h;
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' \
         viewBox='0 0 {width} {height}' font-family='sans-serif' font-size='12'>\n\
         <rect width='100%' height='100%' fill='#ffffff'/>\n"
    );
    let _ = writeln!(
        s,
        "<text x='8' y='18' font-size='15' font-weight='bold'>Where io_uring wins: server \
         CPU per message, ×the other server, cell by cell</text>"
    );
    let _ = writeln!(
        s,
        "<text x='8' y='36' fill='#444'>{} · {} · {} rounds per cell{}</text>",
        esc(&m.date),
        esc(&m.machine),
        m.rounds,
        if m.complete { "" } else { " · INTERRUPTED" }
    );
    legend(&mut s, 54);
    for (i, (server, over)) in pairs.iter().enumerate() {
        let y0 = 92 + i * row_h;
        let _ = writeln!(
            s,
            "<text x='8' y='{}' font-size='14' font-weight='bold'>{} ×{}</text>",
            y0 + 16,
            esc(server),
            esc(over)
        );
        let mut x0 = 0;
        for slice in &m.slices {
            panel(&mut s, m, slice, server, over, x0, y0 + 24);
            x0 += panel_w(slice);
        }
    }
    s.push_str("</svg>\n");
    s
}

fn legend(s: &mut String, y: usize) {
    let items = [
        ("#1b7837", "cheaper, ≥20 %"),
        ("#a6dba0", "cheaper"),
        ("#e0e0e0", "level (inside the A/A noise)"),
        ("#f4a582", "dearer"),
        ("#b2182b", "dearer, ≥20 %"),
        ("#f7f7f7", "too few rounds to call"),
        ("#303030", "FAILED"),
    ];
    let mut x = 8;
    for (fill, label) in items {
        let _ = writeln!(
            s,
            "<rect x='{x}' y='{y}' width='14' height='14' fill='{fill}' stroke='#999'/>\
             <text x='{}' y='{}'>{}</text>",
            x + 18,
            y + 11,
            esc(label)
        );
        x += 26 + label.chars().count() * 7;
    }
}

fn panel(s: &mut String, m: &MapFile, sl: &Slice, server: &str, over: &str, x0: usize, y0: usize) {
    let _ = writeln!(
        s,
        "<text x='{}' y='{}' fill='#222'>{}</text>",
        x0 + 8,
        y0 + 12,
        esc(&sl.name)
    );
    let _ = writeln!(
        s,
        "<text x='{}' y='{}' fill='#444' text-anchor='middle'>{} →</text>",
        x0 + LEFT + sl.xs.len() * CELL_W / 2,
        y0 + 30,
        esc(sl.x.label())
    );
    for (j, &x) in sl.xs.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text x='{}' y='{}' text-anchor='middle'>{}</text>",
            x0 + LEFT + j * CELL_W + CELL_W / 2,
            y0 + TOP - 8,
            esc(&sl.x.show(x))
        );
    }
    let _ = writeln!(
        s,
        "<text x='{}' y='{}' fill='#444'>{} ↓</text>",
        x0 + 8,
        y0 + TOP - 8,
        esc(short(sl.y.label()))
    );
    for (i, &y) in sl.ys.iter().enumerate() {
        let cy = y0 + TOP + i * CELL_H;
        let _ = writeln!(
            s,
            "<text x='{}' y='{}' text-anchor='end'>{}</text>",
            x0 + LEFT - 8,
            cy + CELL_H / 2 + 4,
            esc(&sl.y.show(y))
        );
        for (j, &x) in sl.xs.iter().enumerate() {
            let cx = x0 + LEFT + j * CELL_W;
            let cell = sl.cell(x, y);
            let h = m.heat(&cell, server, over);
            let (fill, ink) = colours(&h);
            let (big, small, title) = match &h {
                HeatCell::Called {
                    ratio,
                    spread,
                    call,
                } => (
                    format!("{ratio:.2}×"),
                    format!("{:.2}–{:.2}", spread.0, spread.1),
                    format!(
                        "{}: {ratio:.2}× ({:.2}–{:.2}), {}",
                        cell.describe(),
                        spread.0,
                        spread.1,
                        match call {
                            Call::Winner => "a winner",
                            Call::Level => "level",
                            Call::TooFewRounds => "too few rounds to call",
                        }
                    ),
                ),
                HeatCell::Failed(why) => (
                    "FAILED".to_string(),
                    String::new(),
                    format!("{}: {why}", cell.describe()),
                ),
                HeatCell::Missing => (
                    "—".to_string(),
                    String::new(),
                    format!("{}: not run", cell.describe()),
                ),
            };
            let _ = writeln!(
                s,
                "<g><title>{}</title><rect x='{cx}' y='{cy}' width='{}' height='{}' \
                 fill='{fill}' stroke='#ffffff' stroke-width='2'/>\
                 <text x='{}' y='{}' text-anchor='middle' font-size='14' fill='{ink}'>{}</text>\
                 <text x='{}' y='{}' text-anchor='middle' font-size='10' fill='{ink}'>{}</text></g>",
                esc(&title),
                CELL_W,
                CELL_H,
                cx + CELL_W / 2,
                cy + 20,
                esc(&big),
                cx + CELL_W / 2,
                cy + 35,
                esc(&small)
            );
        }
    }
}

/// An axis label short enough for the left margin.
fn short(label: &str) -> &str {
    match label {
        "messages in flight per connection" => "in flight",
        "messages per connection" => "msgs per conn",
        "server receive buffer" => "buffer",
        l => l,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::map::record::tests::one_cell;

    #[test]
    fn text_and_svg_show_the_call_and_never_a_winner_inside_the_noise() {
        let level = one_cell(&[0.93, 0.95, 0.94], &[0.92, 1.05, 1.0]);
        let t = text(&level);
        assert!(t.contains("0.94 ="), "{t}");
        let svg_level = svg(&level);
        assert!(
            svg_level.contains("#e0e0e0") && !svg_level.contains("fill='#a6dba0' stroke='#ffffff'")
        );
        let win = one_cell(&[0.70, 0.72, 0.75], &[0.97, 1.02, 1.0]);
        assert!(text(&win).contains("0.72 <"), "{}", text(&win));
        assert!(svg(&win).contains("fill='#1b7837' stroke='#ffffff'"));
        let few = one_cell(&[0.5, 0.5], &[]);
        assert!(text(&few).contains("0.50 ?"));
    }

    /// docs/map.svg is drawn from docs/map.json (`ringecho-perf draw-map docs/map.json --out
    /// docs/map.svg`), never by hand, and the committed map is a real run's.
    #[test]
    fn docs_map_svg_is_drawn_from_docs_map_json() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        let json = std::fs::read_to_string(docs.join("map.json")).unwrap();
        let m: MapFile = serde_json::from_str(&json).unwrap();
        assert!(m.complete && !m.records.is_empty() && m.command.contains("map"));
        let drawn = svg(&m);
        let committed = std::fs::read_to_string(docs.join("map.svg")).unwrap();
        assert!(
            drawn == committed,
            "docs/map.svg is stale: ringecho-perf draw-map docs/map.json --out docs/map.svg"
        );
    }
}
