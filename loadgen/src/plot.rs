//! Latency percentile curves from .hgrm files, drawn as an SVG: the picture HdrHistogram's
//! own plotter draws (latency against 1/(1-percentile) on a log axis), so tails stand out.

use std::io;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

/// Curve colours that stay apart on white.
pub const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x17, 0x17, 0x17),
];

/// A drawing error as an I/O error.
pub(crate) fn draw_err<E: std::fmt::Debug>(e: E) -> io::Error {
    io::Error::other(format!("{e:?}"))
}

/// A white 900 × 540 SVG canvas writing to `out`.
pub(crate) fn canvas(out: &Path) -> io::Result<DrawingArea<SVGBackend<'_>, Shift>> {
    let root = SVGBackend::new(out, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    Ok(root)
}

/// The chart builder every plot here starts from: title, margins, label areas.
pub(crate) fn builder<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64);
    b
}

/// Draws the legend (upper left) and writes the file.
pub(crate) fn finish<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    root: &DrawingArea<SVGBackend<'a>, Shift>,
) -> io::Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)
}

/// One .hgrm file's (1/(1-percentile), latency ms) points.
pub fn read_hgrm(path: &Path) -> io::Result<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let points: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let cols: Vec<f64> = l
                .split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect();
            match cols.as_slice() {
                [value, _, _, inverse] => Some((*inverse, *value)),
                _ => None,
            }
        })
        .collect();
    if points.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: no percentile rows", path.display()),
        ));
    }
    Ok(points)
}

/// Writes an SVG with one curve per (label, .hgrm file).
pub fn plot_hgrm(out: &Path, title: &str, curves: &[(String, PathBuf)]) -> io::Result<()> {
    let series: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|(label, path)| Ok((label.clone(), read_hgrm(path)?)))
        .collect::<io::Result<_>>()?;
    let x_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(10.0f64, f64::max)
        .min(1e6);
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(0.01f64, f64::max)
        * 1.1;
    let root = canvas(out)?;
    let draw = draw_err;
    let mut chart = builder(&root, title)
        .build_cartesian_2d((1.0..x_max).log_scale(), 0.0..y_max)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| format!("{:.4}%", 100.0 * (1.0 - 1.0 / x)))
        .draw()
        .map_err(draw)?;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()].to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(draw)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    finish(&mut chart, &root)
}
