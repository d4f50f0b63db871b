//! Page–Hinkley on increases of a model's error, for the loop's per-label path: the same
//! recurrences, in the same order of the same IEEE operations, as `PageHinkleyDetector` in
//! `loop/error_detectors.py` (river's `PageHinkley(mode="up")` written out), so its answers are
//! identical, not merely close (`tests/loop/test_detectors.py` checks both against river's).
//! What this saves is the Python method's attribute traffic on every labelled prediction.

use pyo3::prelude::*;

#[pyclass(module = "headwater_native")]
pub struct PageHinkley {
    threshold: f64,
    delta: f64,
    min_instances: u64,
    alpha: f64,
    updates: u64,
    mean: f64,
    sum: f64,
    minimum: f64,
    at_minimum: u64,
    alarmed: bool,
}

impl PageHinkley {
    fn start(&mut self) {
        self.updates = 0;
        self.mean = 0.0;
        self.sum = 0.0;
        self.minimum = f64::INFINITY;
        self.at_minimum = 0;
        self.alarmed = false;
    }
}

#[pymethods]
impl PageHinkley {
    #[new]
    fn new(threshold: f64, delta: f64, min_instances: u64, alpha: f64) -> Self {
        let mut detector = PageHinkley {
            threshold,
            delta,
            min_instances,
            alpha,
            updates: 0,
            mean: 0.0,
            sum: 0.0,
            minimum: f64::INFINITY,
            at_minimum: 0,
            alarmed: false,
        };
        detector.start();
        detector
    }

    /// Adds one error; whether the detector alarms at it (it starts afresh at the next).
    fn update(&mut self, error: f64) -> bool {
        if self.alarmed {
            self.start();
        }
        self.updates += 1;
        let updates = self.updates;
        self.mean += (1.0 / updates as f64) * (error - self.mean);
        let total = self.alpha * self.sum + (error - self.mean) - self.delta;
        self.sum = total;
        if total < self.minimum {
            self.minimum = total;
        }
        if total - self.minimum <= 0.0 {
            self.at_minimum = updates;
        }
        self.alarmed = updates >= self.min_instances && total - self.minimum > self.threshold;
        self.alarmed
    }

    /// Updates since the estimated change point.
    #[getter]
    fn since_change(&self) -> u64 {
        self.updates - self.at_minimum
    }

    /// The cumulative deviation above its running minimum.
    #[getter]
    fn value(&self) -> f64 {
        if self.updates == 0 {
            0.0
        } else {
            self.sum - self.minimum
        }
    }
}
