//! Feature reads: a feature set's built-in features computed from an entity's history in one
//! call, the same values as `EntityState.read` in Python (checked to the bit by
//! `tests/unit/test_native_features.py`).
//!
//! The history stays in Python lists (times ascending, one list of cells per column, a cell a
//! float, a str or None), so storage, pruning and the changelog format do not change; this
//! reads them. Sums are exact (CPython's `math.fsum` algorithm) and every other step is the
//! same IEEE operation in the same order, so the results are identical, not merely close.

use std::collections::HashSet;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyString, PyTuple};

#[derive(Clone, Copy)]
enum How {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    StdDev,
    Distinct,
}

enum Kind {
    Aggregate {
        how: How,
        column: Option<usize>,
        window: usize,
        filter: Option<(usize, String)>,
    },
    Last {
        column: usize,
    },
    LastN {
        column: usize,
        n: usize,
    },
    SinceLast,
}

/// ``numerator / denominator`` of two base outputs (by index), computed after them all.
struct Ratio {
    at: usize,
    numerator: usize,
    denominator: usize,
}

struct Window {
    kind: u8, // b't' tumbling, b'h' hopping, b's' sliding
    size: i64,
    hop: i64,
}

impl Window {
    /// The earliest event time the window holds at `t` (Python's floor division and modulo).
    fn start(&self, t: i64) -> i64 {
        match self.kind {
            b't' => t - t.rem_euclid(self.size),
            b'h' => ((t - self.size).div_euclid(self.hop) + 1) * self.hop,
            _ => t - self.size + 1,
        }
    }
}

/// A feature set's built-in features, compiled: ``read(times, columns, t, missing)``.
#[pyclass(frozen, module = "headwater_native")]
pub struct FeatureReader {
    windows: Vec<Window>,
    features: Vec<(usize, Kind)>, // each with the index of its first output
    ratios: Vec<Ratio>,
    names: Vec<Py<PyString>>,
    used: Vec<bool>, // by column: whether a feature reads it
    reach: usize,    // how many of the newest events the last-value features read
}

fn times_at(times: &Bound<'_, PyList>, i: usize) -> PyResult<i64> {
    times.get_item(i)?.extract()
}

/// The first index in `lo..hi` whose time is `> t` (`right`) or `>= t` (not `right`).
fn bisect(
    times: &Bound<'_, PyList>,
    t: i64,
    mut lo: usize,
    mut hi: usize,
    right: bool,
) -> PyResult<usize> {
    while lo < hi {
        let mid = (lo + hi) / 2;
        let at = times_at(times, mid)?;
        if at < t || (right && at == t) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// CPython's `math.fsum`: the correctly rounded sum (Shewchuk's partials, then the half-even
/// fix-up). None where CPython would raise or return a non-finite value: the caller reads in
/// Python, which reports it as Python does.
fn fsum(values: &[f64]) -> Option<f64> {
    let mut partials: Vec<f64> = Vec::with_capacity(8);
    for &value in values {
        let mut x = value;
        let mut i = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        partials.truncate(i);
        if x != 0.0 {
            // CPython keeps no zero partial, so a sum of zeros is +0.0, never -0.0.
            if !x.is_finite() {
                return None;
            }
            partials.push(x);
        }
    }
    let mut n = partials.len();
    if n == 0 {
        return Some(0.0);
    }
    n -= 1;
    let mut hi = partials[n];
    let mut lo = 0.0;
    while n > 0 {
        let x = hi;
        n -= 1;
        let y = partials[n];
        hi = x + y;
        let yr = hi - x;
        lo = y - yr;
        if lo != 0.0 {
            break;
        }
    }
    if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        let yr = x - hi;
        if y == yr {
            hi = x;
        }
    }
    Some(hi)
}

/// A history cell as the features see it. Python stores a float for a numeric field, a str for
/// a categorical one and None where the event lacked the field; anything else is `Other`, and
/// a feature meeting one leaves the read to Python.
#[derive(Clone, Copy)]
enum Cell<'a> {
    Missing,
    Num(f64),
    Text(&'a str),
    Other,
}

fn cell_of<'a>(item: &'a Bound<'_, PyAny>) -> Cell<'a> {
    if let Ok(f) = item.downcast::<PyFloat>() {
        Cell::Num(f.value())
    } else if item.is_none() {
        Cell::Missing
    } else if let Ok(s) = item.downcast::<PyString>() {
        s.to_str().map(Cell::Text).unwrap_or(Cell::Other)
    } else {
        Cell::Other
    }
}

fn is_text(cell: &Cell<'_>, wanted: &str) -> bool {
    matches!(cell, Cell::Text(s) if *s == wanted)
}

/// The reusable buffers of one read.
#[derive(Default)]
struct Scratch<'a> {
    numbers: Vec<f64>,
    squares: Vec<f64>,
    texts: HashSet<&'a str>,
    bits: HashSet<u64>,
}

fn aggregate<'a>(
    how: How,
    cells: impl Iterator<Item = Cell<'a>>,
    missing: f64,
    scratch: &mut Scratch<'a>,
) -> Option<f64> {
    if let How::Distinct = how {
        scratch.texts.clear();
        scratch.bits.clear();
        for cell in cells {
            match cell {
                Cell::Text(s) => {
                    scratch.texts.insert(s);
                }
                Cell::Num(x) => {
                    scratch.bits.insert(if x == 0.0 { 0 } else { x.to_bits() });
                    // -0.0 == 0.0
                }
                Cell::Missing => {}
                Cell::Other => return None,
            }
        }
        return Some((scratch.texts.len() + scratch.bits.len()) as f64);
    }
    // Numbers only: a None (an event without the field) is left out, as in Python.
    let values = &mut scratch.numbers;
    values.clear();
    for cell in cells {
        match cell {
            Cell::Num(x) => values.push(x),
            Cell::Missing => {}
            Cell::Text(_) | Cell::Other => return None, // Python reports what it makes of it
        }
    }
    if let How::Sum = how {
        return fsum(values);
    }
    if values.is_empty() {
        return Some(missing);
    }
    let n = values.len() as f64;
    match how {
        How::Mean => fsum(values).map(|s| s / n),
        // Python's min and max keep the first of equal values (0.0 before -0.0).
        How::Min => Some(
            values[1..]
                .iter()
                .fold(values[0], |m, &x| if x < m { x } else { m }),
        ),
        How::Max => Some(
            values[1..]
                .iter()
                .fold(values[0], |m, &x| if x > m { x } else { m }),
        ),
        How::StdDev => {
            let mean = fsum(values)? / n;
            scratch.squares.clear();
            scratch
                .squares
                .extend(values.iter().map(|&v| (v - mean) * (v - mean)));
            fsum(&scratch.squares).map(|s| (s / n).sqrt())
        }
        How::Count | How::Sum | How::Distinct => unreachable!("handled above"),
    }
}

#[pymethods]
impl FeatureReader {
    /// ``plan``: (windows, features, names), built by ``streams.featureset.native_plan``.
    #[new]
    fn new(plan: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let py = plan.py();
        let mut windows = Vec::new();
        for w in plan.get_item(0)?.downcast::<PyList>()?.iter() {
            let (kind, size, hop): (String, i64, i64) = w.extract()?;
            let kind = match kind.as_str() {
                "tumbling" => b't',
                "hopping" => b'h',
                "sliding" => b's',
                other => return Err(PyValueError::new_err(format!("unknown window {other:?}"))),
            };
            if size <= 0 || (kind == b'h' && hop <= 0) {
                return Err(PyValueError::new_err(
                    "a window needs a positive size and hop",
                ));
            }
            windows.push(Window { kind, size, hop });
        }
        let mut features = Vec::new();
        let mut ratios = Vec::new();
        for f in plan.get_item(1)?.downcast::<PyList>()?.iter() {
            let f = f.downcast::<PyTuple>()?.clone();
            let at: usize = f.get_item(0)?.extract()?;
            let f = f.get_slice(1, f.len());
            let kind: String = f.get_item(0)?.extract()?;
            if kind == "ratio" {
                let numerator = f.get_item(1)?.extract()?;
                let denominator = f.get_item(2)?.extract()?;
                ratios.push(Ratio {
                    at,
                    numerator,
                    denominator,
                });
                continue;
            }
            features.push((
                at,
                match kind.as_str() {
                    "aggregate" => {
                        let how: String = f.get_item(1)?.extract()?;
                        let how = match how.as_str() {
                            "count" => How::Count,
                            "sum" => How::Sum,
                            "mean" => How::Mean,
                            "min" => How::Min,
                            "max" => How::Max,
                            "stddev" => How::StdDev,
                            "distinct" => How::Distinct,
                            other => {
                                return Err(PyValueError::new_err(format!(
                                    "unknown aggregation {other:?}"
                                )))
                            }
                        };
                        Kind::Aggregate {
                            how,
                            column: f.get_item(2)?.extract()?,
                            window: f.get_item(3)?.extract()?,
                            filter: f.get_item(4)?.extract()?,
                        }
                    }
                    "last" => Kind::Last {
                        column: f.get_item(1)?.extract()?,
                    },
                    "last_n" => Kind::LastN {
                        column: f.get_item(1)?.extract()?,
                        n: f.get_item(2)?.extract()?,
                    },
                    "since_last" => Kind::SinceLast,
                    other => {
                        return Err(PyValueError::new_err(format!("unknown feature {other:?}")))
                    }
                },
            ));
        }
        let names: Vec<String> = plan.get_item(2)?.extract()?;
        let outputs = |kind: &Kind| match kind {
            Kind::LastN { n, .. } => *n,
            _ => 1,
        };
        let mut filled = vec![false; names.len()];
        for (at, kind) in &features {
            for i in *at..*at + outputs(kind) {
                *filled
                    .get_mut(i)
                    .ok_or_else(|| PyValueError::new_err("output past the names"))? = true;
            }
        }
        for r in &ratios {
            let bases = [r.numerator, r.denominator];
            if r.at >= names.len()
                || bases
                    .iter()
                    .any(|&i| !filled.get(i).copied().unwrap_or(false))
            {
                return Err(PyValueError::new_err("a ratio must read two base outputs"));
            }
            filled[r.at] = true;
        }
        if filled.iter().any(|f| !f) {
            return Err(PyValueError::new_err(
                "the plan leaves an output without a feature",
            ));
        }
        let names = names
            .iter()
            .map(|n| PyString::intern(py, n).unbind())
            .collect();
        let mut used: Vec<bool> = Vec::new();
        let mut reach = 0;
        for (_, kind) in &features {
            let (read, back) = match kind {
                Kind::Aggregate { column, filter, .. } => {
                    ([*column, filter.as_ref().map(|(f, _)| *f)], 0)
                }
                Kind::Last { column } => ([Some(*column), None], 1),
                Kind::LastN { column, n } => ([Some(*column), None], *n),
                Kind::SinceLast => ([None, None], 0),
            };
            reach = reach.max(back);
            for column in read.into_iter().flatten() {
                if used.len() <= column {
                    used.resize(column + 1, false);
                }
                used[column] = true;
            }
        }
        Ok(FeatureReader {
            windows,
            features,
            ratios,
            names,
            used,
            reach,
        })
    }

    /// The values as of time ``t`` by output name, in declaration order; None when Python must
    /// read instead (a cell that is not what the feature expects, an overflowing sum).
    fn read<'py>(
        &self,
        py: Python<'py>,
        times: &Bound<'py, PyList>,
        columns: &Bound<'py, PyList>,
        t: i64,
        missing: f64,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let len = times.len();
        let high = if len > 0 && t >= times_at(times, len - 1)? {
            len
        } else {
            bisect(times, t, 0, len, true)?
        };
        let mut lows = Vec::with_capacity(self.windows.len());
        for w in &self.windows {
            lows.push(bisect(times, w.start(t), 0, high, false)?);
        }
        // The cells the features look at, read from Python once: every used column from the
        // oldest window start (or the oldest last-N event) up to `high`.
        let first = lows
            .iter()
            .copied()
            .fold(high.saturating_sub(self.reach), usize::min);
        let mut items: Vec<Vec<Bound<'py, PyAny>>> = Vec::with_capacity(self.used.len());
        for (column, used) in self.used.iter().enumerate() {
            let mut kept = Vec::new();
            if *used {
                let list = columns.get_item(column)?;
                let list = list.downcast::<PyList>()?;
                kept.reserve(high - first);
                for i in first..high {
                    kept.push(list.get_item(i)?);
                }
            }
            items.push(kept);
        }
        let cells: Vec<Vec<Cell<'_>>> = items
            .iter()
            .map(|column| column.iter().map(cell_of).collect())
            .collect();
        let span = |column: usize, low: usize| &cells[column][low - first..high - first];
        let mut scratch = Scratch::default();
        let mut values = vec![0.0f64; self.names.len()];
        for (at, feature) in &self.features {
            let at = *at;
            match feature {
                Kind::Aggregate {
                    how: How::Count,
                    filter: None,
                    window,
                    ..
                } => values[at] = (high - lows[*window]) as f64,
                Kind::Aggregate {
                    how: How::Count,
                    filter: Some((f, wanted)),
                    window,
                    ..
                } => {
                    let n = span(*f, lows[*window])
                        .iter()
                        .filter(|c| is_text(c, wanted))
                        .count();
                    values[at] = n as f64;
                }
                Kind::Aggregate {
                    how,
                    column,
                    window,
                    filter,
                } => {
                    let Some(column) = column else {
                        return Err(PyValueError::new_err(
                            "an aggregate other than count needs a field",
                        ));
                    };
                    let low = lows[*window];
                    let cells = span(*column, low).iter().copied();
                    let found = match filter {
                        None => aggregate(*how, cells, missing, &mut scratch),
                        Some((f, wanted)) => {
                            let keep = span(*f, low).iter().map(|w| is_text(w, wanted));
                            let kept = cells.zip(keep).filter(|(_, k)| *k).map(|(c, _)| c);
                            aggregate(*how, kept, missing, &mut scratch)
                        }
                    };
                    match found {
                        Some(v) => values[at] = v,
                        None => return Ok(None),
                    }
                }
                Kind::Last { column } => {
                    values[at] = match span(*column, first).last() {
                        Some(Cell::Num(x)) => *x,
                        _ => missing,
                    }
                }
                Kind::LastN { column, n } => {
                    let column = span(*column, first);
                    for k in 0..*n {
                        values[at + k] = match column.len().checked_sub(k + 1).map(|i| column[i]) {
                            Some(Cell::Num(x)) => x,
                            _ => missing,
                        };
                    }
                }
                Kind::SinceLast => {
                    values[at] = if high < 2 {
                        missing
                    } else {
                        (t - times_at(times, high - 2)?) as f64 / 1000.0
                    }
                }
            }
        }
        for r in &self.ratios {
            let below = values[r.denominator];
            values[r.at] = if below != 0.0 {
                values[r.numerator] / below
            } else {
                missing
            };
        }
        let dict = PyDict::new(py);
        for (name, value) in self.names.iter().zip(values) {
            dict.set_item(name.bind(py), value)?;
        }
        Ok(Some(dict))
    }
}
