//! The statistics every figure is summarised by: a median over rounds and the spread it is
//! shown with, and the order things are shown in.

/// The median of `v` (0 when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The lowest and highest of per-round ratios (all positive): the spread a ratio's median is
/// shown with.
pub fn spread(ratios: &[f64]) -> (f64, f64) {
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    (lo, hi)
}

/// `items` in the order each first appears, repeats left out: the one rule for "the
/// scenarios (or servers) in the order they ran".
pub fn first_seen<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_seen_keeps_the_order_and_drops_repeats() {
        assert_eq!(first_seen(["b", "a", "b", "c", "a"]), ["b", "a", "c"]);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(spread(&[1.1, 0.9, 1.0]), (0.9, 1.1));
    }
}
