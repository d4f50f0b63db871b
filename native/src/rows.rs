//! Rows of named values (Python dicts) as one matrix: the drift monitor's window.
//!
//! Every window of served features is a list of dicts, one per event, and the statistics need
//! it as a float64 matrix (one column per monitored feature). Python's fastest way, one
//! `itemgetter` per row into `numpy.fromiter`, costs a hashed lookup per value; here a row is
//! read in its own order and matched against the previous row's key order (a comparison of the
//! keys' UTF-8 bytes), because the rows of one stream have one layout. A row that does not match
//! is read by name, and its layout is kept for the rows after it. The values are the same as
//! Python's (`tests/unit/test_native_rows.py`): a name a row lacks, or a None, is NaN, and a key
//! no column names is ignored. A value that is not a number (a float, an int, anything with
//! `__float__`) is refused with the feature's name, where numpy would also parse a string.

use std::collections::HashMap;

use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyList, PyString};

/// One position of a row's layout: the key there and its column, if monitored.
struct Slot {
    key: Vec<u8>,
    column: Option<usize>,
}

/// The columns of a fixed list of names, and the layout of the last row read.
#[pyclass(module = "headwater_native")]
pub struct RowMatrix {
    names: Vec<String>,
    columns: HashMap<Vec<u8>, usize>,
    layout: Vec<Slot>,
}

fn value_of(value: &Bound<'_, PyAny>, name: &[u8]) -> PyResult<f64> {
    if let Ok(f) = value.downcast_exact::<PyFloat>() {
        return Ok(f.value());
    }
    if value.is_none() {
        return Ok(f64::NAN); // a null value is an absent one, as numpy reads it
    }
    value.extract::<f64>().map_err(|_| {
        PyTypeError::new_err(format!(
            "feature {:?}: expected a number, got {}",
            String::from_utf8_lossy(name),
            value
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

impl RowMatrix {
    /// Writes the row into `out` if its keys are the layout's, in the layout's order.
    fn read_in_layout(&self, row: &Bound<'_, PyDict>, out: &mut [f64]) -> PyResult<bool> {
        if row.len() != self.layout.len() {
            return Ok(false);
        }
        for ((key, value), slot) in row.iter().zip(&self.layout) {
            let Ok(key) = key.downcast_into::<PyString>() else {
                return Ok(false); // a key that is no name: read by name
            };
            if key.to_str()?.as_bytes() != slot.key.as_slice() {
                return Ok(false);
            }
            if let Some(column) = slot.column {
                out[column] = value_of(&value, &slot.key)?;
            }
        }
        Ok(true)
    }

    /// Reads the row by name and makes its order the layout.
    fn read_by_name(&mut self, row: &Bound<'_, PyDict>, out: &mut [f64]) -> PyResult<()> {
        out.fill(f64::NAN);
        self.layout.clear();
        for (key, value) in row.iter() {
            let Ok(text) = key.downcast::<PyString>() else {
                continue; // not a feature name: no column
            };
            let key = text.to_str()?.as_bytes().to_vec();
            let column = self.columns.get(&key).copied();
            if let Some(column) = column {
                out[column] = value_of(&value, &key)?;
            }
            self.layout.push(Slot { key, column });
        }
        if self.layout.len() != row.len() {
            self.layout.clear(); // a key that is no name: no layout, the next row read by name
        }
        Ok(())
    }

    /// Reads a mapping that is not a dict, one name at a time.
    fn read_mapping(&self, row: &Bound<'_, PyAny>, out: &mut [f64]) -> PyResult<()> {
        let py = row.py();
        for (column, name) in self.names.iter().enumerate() {
            match row.get_item(name) {
                Ok(value) => out[column] = value_of(&value, name.as_bytes())?,
                Err(e) if e.is_instance_of::<PyKeyError>(py) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[pymethods]
impl RowMatrix {
    #[new]
    fn new(names: Vec<String>) -> Self {
        let columns = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_bytes().to_vec(), i))
            .collect();
        RowMatrix {
            names,
            columns,
            layout: Vec::new(),
        }
    }

    /// The rows as a float64 matrix in bytes, one column after another: ``len(names)`` runs
    /// of ``len(rows)`` values (the statistics sort each feature's values, contiguous so).
    fn build<'py>(
        &mut self,
        py: Python<'py>,
        rows: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let (width, height) = (self.names.len(), rows.len());
        let cells = height * width;
        PyBytes::new_with(py, cells * 8, |buffer| {
            let mut out = vec![f64::NAN; width];
            for (i, row) in rows.iter().enumerate() {
                out.fill(f64::NAN);
                match row.downcast::<PyDict>() {
                    Ok(row) => {
                        if !self.read_in_layout(row, &mut out)? {
                            self.read_by_name(row, &mut out)?;
                        }
                    }
                    Err(_) => self.read_mapping(&row, &mut out)?,
                }
                for (j, value) in out.iter().enumerate() {
                    let at = (j * height + i) * 8;
                    buffer[at..at + 8].copy_from_slice(&value.to_ne_bytes());
                }
            }
            Ok(())
        })
    }

    #[getter]
    fn names(&self) -> Vec<String> {
        self.names.clone()
    }
}
