//! report.html's two charts, as SVG markup through maud (escaped by default, as the page
//! is): each server's CPU per message ×baseline per scenario with its rounds' spread, and
//! the profile's split of each server's CPU by category. docs/architecture.md says why
//! these two are markup rather than plotters, which draws the loadgen's latency plots.

use maud::{html, Markup};

use crate::analysis::profile::{Category, Profile};
use crate::analysis::summary::Row;

/// The colour of a profile category, the same in the chart and its legend.
fn colour(c: Category) -> &'static str {
    match c {
        Category::TcpIp => "#4e79a7",
        Category::Scheduling => "#f28e2b",
        Category::Interface => "#e15759",
        Category::User => "#59a14f",
        Category::Other => "#bab0ac",
    }
}

/// ` (lo–hi over N rounds)` where a row has more than one round, else nothing.
pub fn spread_text(r: &Row) -> String {
    match r.cpu_ratio_spread {
        Some((lo, hi)) if r.rounds > 1 => format!(" ({lo:.2}–{hi:.2} over {} rounds)", r.rounds),
        _ => String::new(),
    }
}

fn f1(x: f64) -> String {
    format!("{x:.1}")
}

/// Horizontal bars of CPU ratio per scenario and server, a line at 1, whiskers for the
/// spread, the baseline's bar grey, cheaper green, dearer red. Every coordinate comes from
/// the few constants in sight.
pub fn ratios(rows: &[Row], scenarios: &[String], baseline: &str) -> Markup {
    const BAR: f64 = 16.0;
    const GAP: f64 = 14.0;
    const LEFT: f64 = 230.0;
    const WIDTH: f64 = 900.0;
    let plotted: Vec<&Row> = rows
        .iter()
        .filter(|r| r.failure.is_none() && r.cpu_ratio.is_some())
        .collect();
    let top = plotted
        .iter()
        .map(|r| {
            r.cpu_ratio_spread
                .map_or(0.0, |s| s.1)
                .max(r.cpu_ratio.unwrap_or(0.0))
        })
        .fold(1.2f64, f64::max);
    let scale = (WIDTH - LEFT - 70.0) / top;
    // Each bar's top edge, scenario by scenario, a gap between scenarios.
    let mut y = 10.0;
    let mut groups = Vec::new();
    for s in scenarios {
        let group: Vec<(&Row, f64)> = plotted
            .iter()
            .filter(|r| &r.scenario == s)
            .map(|r| {
                let at = y;
                y += BAR;
                (*r, at)
            })
            .collect();
        if group.is_empty() {
            continue;
        }
        groups.push((s, group));
        y += GAP;
    }
    let one = LEFT + scale;
    let height = y + 30.0;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(format!("{height:.0}"))
            font-family="sans-serif" font-size="12" {
            @for (s, group) in &groups {
                text x="4" y=(format!("{:.0}", group[0].1 + BAR - 4.0)) font-weight="bold" { (s) }
                @for (r, y) in group {
                    @let ratio = r.cpu_ratio.unwrap_or(0.0);
                    @let fill = if r.backend == baseline { "#bab0ac" } else if ratio <= 1.0 { "#59a14f" } else { "#e15759" };
                    @let w = ratio * scale;
                    @let text_y = format!("{:.0}", y + BAR - 4.0);
                    text x=(format!("{:.0}", LEFT - 6.0)) y=(text_y) text-anchor="end" { (r.backend) }
                    rect x=(LEFT) y=(format!("{y:.0}")) width=(f1(w)) height=(format!("{:.0}", BAR - 2.0)) fill=(fill) {
                        title { (r.backend) " in " (s) ": " (format!("{ratio:.2}")) "× " (baseline) (spread_text(r)) }
                    }
                    @if let Some((lo, hi)) = r.cpu_ratio_spread {
                        @let (x0, x1, ym) = (f1(LEFT + lo * scale), f1(LEFT + hi * scale), y + BAR / 2.0 - 1.0);
                        line x1=(x0) x2=(x1) y1=(f1(ym)) y2=(f1(ym)) stroke="#222" {}
                        line x1=(x0) x2=(x0) y1=(f1(ym - 4.0)) y2=(f1(ym + 4.0)) stroke="#222" {}
                        line x1=(x1) x2=(x1) y1=(f1(ym - 4.0)) y2=(f1(ym + 4.0)) stroke="#222" {}
                    }
                    @let end = LEFT + r.cpu_ratio_spread.map_or(w, |s| (s.1 * scale).max(w));
                    text x=(f1(end + 4.0)) y=(text_y) { (format!("{ratio:.2}")) "×" }
                }
            }
            line x1=(f1(one)) x2=(f1(one)) y1="4" y2=(format!("{y:.0}")) stroke="#222" stroke-dasharray="4 3" {}
            text x=(f1(one)) y=(format!("{:.0}", y + 14.0)) text-anchor="middle" { "1.0 = " (baseline) }
            text x=(LEFT) y=(format!("{:.0}", height - 2.0)) fill="#555" {
                "server CPU µs per echoed message, × " (baseline)
            }
        }
    }
}

/// A stacked bar per server of its CPU per message by category, and the legend.
pub fn profile(profiles: &[Profile]) -> Markup {
    const WIDTH: f64 = 900.0;
    const BAR: f64 = 22.0;
    const LEFT: f64 = 130.0;
    let top = profiles
        .iter()
        .map(|p| p.cpu_us_per_msg)
        .fold(0.0, f64::max)
        .max(1e-9);
    let height = 30.0 + profiles.len() as f64 * (BAR + 8.0) + 40.0;
    let scale = (WIDTH - LEFT - 80.0) / top;
    let legend_y = 20.0 + profiles.len() as f64 * (BAR + 8.0) + 10.0;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height)
            font-family="sans-serif" font-size="12" {
            @for (i, p) in profiles.iter().enumerate() {
                @let y = 20.0 + i as f64 * (BAR + 8.0);
                text x=(LEFT - 6.0) y=(y + 15.0) text-anchor="end" { (p.server) }
                @let widths: Vec<f64> = p.categories.iter().map(|(_, _, us)| us * scale).collect();
                @for (k, (c, _, us)) in p.categories.iter().enumerate() {
                    @let x = LEFT + widths[..k].iter().sum::<f64>();
                    rect x=(f1(x)) y=(y) width=(f1(widths[k])) height=(BAR) fill=(colour(*c)) {
                        title { (c.label()) ": " (format!("{us:.2}")) " µs" }
                    }
                }
                @let end = LEFT + widths.iter().sum::<f64>();
                text x=(f1(end + 4.0)) y=(y + 15.0) { (format!("{:.2}", p.cpu_us_per_msg)) " µs" }
            }
            @for (i, c) in Category::ALL.iter().enumerate() {
                @let x = LEFT + 165.0 * i as f64;
                rect x=(x) y=(legend_y) width="12" height="12" fill=(colour(*c)) {}
                text x=(x + 16.0) y=(legend_y + 11.0) { (c.label()) }
            }
            text x=(LEFT) y=(height - 2.0) fill="#555" { "server CPU µs per echoed message" }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row(scenario: &str, backend: &str, ratio: f64, spread: (f64, f64)) -> Row {
        Row {
            scenario: scenario.into(),
            backend: backend.into(),
            rounds: 3,
            cpu_ratio: Some(ratio),
            cpu_ratio_spread: Some(spread),
            witnessed: true,
            server_agrees: true,
            loadgen_limited_rounds: 3,
            ..Row::default()
        }
    }

    #[test]
    fn the_chart_has_a_bar_and_a_whisker_per_server_and_escapes_names() {
        let rows = vec![
            row("c100x64", "epoll", 1.0, (1.0, 1.0)),
            row("c100x64", "<odd>", 0.9, (0.8, 0.95)),
        ];
        let svg = ratios(&rows, &["c100x64".to_string()], "epoll").into_string();
        assert_eq!(svg.matches("<rect").count(), 2);
        assert_eq!(svg.matches("<line").count(), 2 * 3 + 1);
        assert!(svg.contains("&lt;odd&gt;") && !svg.contains("<odd>"));
        assert!(svg.contains("0.90×"));
    }

    #[test]
    fn the_profile_chart_stacks_every_category_and_has_a_legend() {
        let p = crate::analysis::profile::profile("multishot", "", 5.0);
        let svg = profile(&[p]).into_string();
        let n = Category::ALL.len();
        assert_eq!(svg.matches("<rect").count(), 2 * n, "{svg}");
        assert!(svg.contains(">multishot</text>"), "{svg}");
    }
}
