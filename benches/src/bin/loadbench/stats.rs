//! Median and spread of a handful of per-round figures.

use std::fmt;

/// The median and the range (min–max) of some samples; `None` when there are
/// none (a figure that was not measured, or not measurable).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// The middle sample (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
}

// === impl Spread ===

impl Spread {
    /// The spread of the finite samples.
    pub fn of(samples: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = samples.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }

    /// Formats with `decimals` places: `0.42 (0.40–0.45)`, or just the median
    /// when every sample is equal.
    pub fn show(&self, decimals: usize) -> String {
        let m = format!("{:.*}", decimals, self.median);
        let lo = format!("{:.*}", decimals, self.min);
        let hi = format!("{:.*}", decimals, self.max);
        if lo == hi {
            m
        } else {
            format!("{m} ({lo}–{hi})")
        }
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.show(2))
    }
}

/// [`Spread::show`] of an optional spread; `n/a` for none.
pub fn show(spread: Option<Spread>, decimals: usize) -> String {
    spread.map_or_else(|| "n/a".to_string(), |s| s.show(decimals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_count_median_is_the_middle_sample() {
        let s = Spread::of([3.0, 1.0, 2.0]);
        assert_eq!(
            s,
            Some(Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            })
        );
    }

    #[test]
    fn even_count_median_is_the_mean_of_the_middle_two() {
        assert_eq!(
            Spread::of([4.0, 1.0, 2.0, 3.0]).map(|s| s.median),
            Some(2.5)
        );
    }

    #[test]
    fn no_finite_samples_is_none() {
        assert_eq!(Spread::of([f64::NAN]), None);
    }
}
