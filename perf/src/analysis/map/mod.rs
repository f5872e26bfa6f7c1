//! The map of the workload space: the same servers, interleaved round by round with the
//! baseline's A/A pair, in every cell of a grid over message size, messages in flight,
//! connections and messages per connection (and the server's buffer), so that the answer
//! to "what does io_uring give" is a map rather than one corner of it. Each cell's
//! contrasts are called by the comparison's one rule ([`super::grid::call`]).
//!
//! The space and its checks are [`axes`]; the records of a finished map (map.json) are
//! [`record`]. Running one is `crate::run`'s; drawing one is `crate::render`'s.

mod axes;
pub(crate) mod record;

pub use axes::{Axis, Cell, Grid, Limits, Slice, AXES};
pub use record::{build, HeatCell, MapFile, Record};
