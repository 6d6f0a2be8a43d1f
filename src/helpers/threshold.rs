//! Warn/fail thresholds, shared by every step that measures something.
//!
//! A measured value crosses a threshold when it is strictly beyond it: with
//! `warn_percent: 80`, 80% passes and 80.1% warns ("disk > 80%").

use crate::duration::Duration;
use crate::vocab::Verdict;

/// Which side of a threshold is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Higher is worse (disk usage, latency).
    Above,
    /// Lower is worse (days until a certificate expires).
    Below,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub warn: Option<f64>,
    pub fail: Option<f64>,
    pub direction: Direction,
}

impl Limits {
    pub fn above(warn: Option<f64>, fail: Option<f64>) -> Limits {
        Limits { warn, fail, direction: Direction::Above }
    }

    pub fn below(warn: Option<f64>, fail: Option<f64>) -> Limits {
        Limits { warn, fail, direction: Direction::Below }
    }

    /// Limits on a count (`warn_above`, `fail_above` of matching lines or events).
    pub fn above_counts(warn: Option<u64>, fail: Option<u64>) -> Limits {
        Limits::above(warn.map(|v| v as f64), fail.map(|v| v as f64))
    }

    /// Limits on a time, in seconds (`warn_latency`, `fail_lag`).
    pub fn above_durations(warn: Option<Duration>, fail: Option<Duration>) -> Limits {
        Limits::above(warn.map(|d| d.std().as_secs_f64()), fail.map(|d| d.std().as_secs_f64()))
    }

    /// `warn > 150ms, fail > 2s` for limits made by [`Limits::above_durations`].
    pub fn describe_durations(&self) -> Option<String> {
        self.describe(|s| Duration(std::time::Duration::from_secs_f64(s)).to_string())
    }

    fn crosses(&self, value: f64, limit: f64) -> bool {
        match self.direction {
            Direction::Above => value > limit,
            Direction::Below => value < limit,
        }
    }

    pub fn verdict(&self, value: f64) -> Verdict {
        if self.fail.is_some_and(|f| self.crosses(value, f)) {
            Verdict::Failed
        } else if self.warn.is_some_and(|w| self.crosses(value, w)) {
            Verdict::Warned
        } else {
            Verdict::Passed
        }
    }

    /// `warn > 80%, fail > 90%`, with `fmt` rendering each limit.
    pub fn describe(&self, fmt: impl Fn(f64) -> String) -> Option<String> {
        let op = match self.direction {
            Direction::Above => ">",
            Direction::Below => "<",
        };
        let parts: Vec<String> = [("warn", self.warn), ("fail", self.fail)]
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| format!("{name} {op} {}", fmt(v))))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// The warn limit must come before the fail limit.
    pub fn check_order(&self, warn_name: &str, fail_name: &str) -> Result<(), String> {
        if let (Some(w), Some(f)) = (self.warn, self.fail) {
            let wrong = match self.direction {
                Direction::Above => w > f,
                Direction::Below => w < f,
            };
            if wrong {
                let relation = if self.direction == Direction::Above { "above" } else { "below" };
                return Err(format!("`{warn_name}` ({w}) is {relation} `{fail_name}` ({f}); a warning must come before a failure"));
            }
        }
        Ok(())
    }
}

/// Limits on both sides: `warn_above`/`fail_above` and `warn_below`/`fail_below` of one value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Band {
    pub above: Limits,
    pub below: Limits,
}

impl Band {
    pub fn new(warn_above: Option<f64>, fail_above: Option<f64>, warn_below: Option<f64>, fail_below: Option<f64>) -> Band {
        Band { above: Limits::above(warn_above, fail_above), below: Limits::below(warn_below, fail_below) }
    }

    /// The worse of the two sides' verdicts.
    pub fn verdict(&self, value: f64) -> Verdict {
        self.above.verdict(value).max(self.below.verdict(value))
    }

    /// `warn > 5, fail < 1`, or None without limits.
    pub fn describe(&self, fmt: impl Fn(f64) -> String) -> Option<String> {
        let parts: Vec<String> = [self.above.describe(&fmt), self.below.describe(&fmt)].into_iter().flatten().collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// Each side in order (a warning before a failure).
    pub fn check_order(&self) -> Result<(), String> {
        self.above.check_order("warn_above", "fail_above")?;
        self.below.check_order("warn_below", "fail_below")
    }
}

/// A percentage with one decimal: `72.4%`.
pub fn percent(v: f64) -> String {
    format!("{v:.1}%")
}

/// A share (`warn_ratio: 0.8`) must lie in 0..=1.
pub fn check_ratio(name: &str, v: Option<f64>) -> Result<(), String> {
    match v {
        Some(r) if !(0.0..=1.0).contains(&r) => Err(format!("`{name}` is {r}; a share lies between 0 and 1")),
        _ => Ok(()),
    }
}

/// A percentage must lie in 0..=100.
pub fn check_percent(name: &str, v: Option<f64>) -> Result<(), String> {
    match v {
        Some(p) if !(0.0..=100.0).contains(&p) => Err(format!("`{name}` is {p}; a percentage lies between 0 and 100")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_beyond_the_limit_crosses_it() {
        let l = Limits::above(Some(80.0), Some(90.0));
        assert_eq!(l.verdict(80.0), Verdict::Passed);
        assert_eq!(l.verdict(80.1), Verdict::Warned);
        assert_eq!(l.verdict(90.5), Verdict::Failed);
        let b = Limits::below(Some(14.0), Some(3.0));
        assert_eq!(b.verdict(30.0), Verdict::Passed);
        assert_eq!(b.verdict(10.0), Verdict::Warned);
        assert_eq!(b.verdict(1.0), Verdict::Failed);
    }

    #[test]
    fn describes_and_orders() {
        let l = Limits::above(Some(80.0), Some(90.0));
        assert_eq!(l.describe(percent).unwrap(), "warn > 80.0%, fail > 90.0%");
        assert!(Limits::above(None, None).describe(percent).is_none());
        assert!(Limits::above(Some(95.0), Some(90.0)).check_order("warn_percent", "fail_percent").is_err());
        assert!(Limits::below(Some(3.0), Some(14.0)).check_order("warn_cert_days", "fail_cert_days").is_err());
    }

    #[test]
    fn a_band_judges_both_sides() {
        let b = Band::new(Some(50.0), Some(100.0), None, Some(1.0));
        assert_eq!(b.verdict(42.0), Verdict::Passed);
        assert_eq!(b.verdict(60.0), Verdict::Warned);
        assert_eq!(b.verdict(120.0), Verdict::Failed);
        assert_eq!(b.verdict(0.5), Verdict::Failed);
        assert_eq!(b.describe(|v| format!("{v}")).unwrap(), "warn > 50, fail > 100, fail < 1");
        assert!(Band::new(Some(100.0), Some(50.0), None, None).check_order().is_err());
        assert!(Band::new(None, None, None, None).describe(|v| format!("{v}")).is_none());
    }
}
