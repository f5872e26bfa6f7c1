//! The rendering layer: text and HTML from the analysis's data. table.txt, paired.txt and
//! profile.txt ([`text`]), report.html ([`html`], through maud, escaped by default, with its
//! charts in [`chart`]), map.txt and the heat maps ([`heat`]), and two results or two maps
//! side by side ([`diff`], [`changes`]). Nothing here starts a process or imports
//! `crate::run`.

pub mod changes;
pub mod chart;
pub mod diff;
pub mod heat;
pub mod html;
pub mod text;
