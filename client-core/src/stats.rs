//! Round-trip statistics over a bounded window of recent samples.

use std::collections::VecDeque;

/// The most recent round-trip samples, in milliseconds.
#[derive(Debug, Clone)]
pub struct RttWindow {
    capacity: usize,
    samples: VecDeque<f64>,
    total: u64,
}

/// A summary of an [`RttWindow`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttSummary {
    pub last_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub max_ms: f64,
    /// Samples in the window.
    pub window: usize,
    /// Samples ever recorded.
    pub total: u64,
}

impl RttWindow {
    pub fn new(capacity: usize) -> Self {
        RttWindow {
            capacity: capacity.max(1),
            samples: VecDeque::new(),
            total: 0,
        }
    }

    /// Records a sample; non-finite or negative samples are ignored.
    pub fn record(&mut self, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(ms);
        self.total += 1;
    }

    pub fn summary(&self) -> Option<RttSummary> {
        let last_ms = *self.samples.back()?;
        let mut sorted: Vec<f64> = self.samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        Some(RttSummary {
            last_ms,
            median_ms: percentile(&sorted, 0.5),
            p90_ms: percentile(&sorted, 0.9),
            max_ms: sorted[sorted.len() - 1],
            window: sorted.len(),
            total: self.total,
        })
    }
}

/// Nearest-rank percentile of an ascending, non-empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_over_window() {
        let mut w = RttWindow::new(10);
        assert_eq!(w.summary(), None);
        for ms in 1..=20 {
            w.record(ms as f64);
        }
        w.record(f64::NAN);
        let s = w.summary().expect("samples recorded");
        assert_eq!(s.window, 10);
        assert_eq!(s.total, 20);
        assert_eq!(s.last_ms, 20.0);
        assert_eq!(s.median_ms, 15.0);
        assert_eq!(s.p90_ms, 19.0);
        assert_eq!(s.max_ms, 20.0);
    }

    #[test]
    fn nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 0.5), 2.0);
        assert_eq!(percentile(&v, 0.99), 4.0);
    }
}
