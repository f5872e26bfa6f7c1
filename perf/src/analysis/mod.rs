//! The analysis layer: functions of data, no processes and no files. The loadgen's reports
//! go in; the summary's rows, the 2×2's contrasts and their calls, the paired ratios, the
//! profile's categories, the scaling points and the map's records come out, and
//! [`view`] derives from them, once, what the renderings show. Nothing here imports
//! `crate::run` or `crate::render` (perf/tests/layers.rs keeps it so).

pub mod grid;
pub mod map;
pub mod paired;
pub mod profile;
pub mod scaling;
pub mod sockopts;
pub mod stats;
pub mod summary;
pub mod view;
