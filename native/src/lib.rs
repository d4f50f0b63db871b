//! Headwater's hot-path Avro codec.
//!
//! An [`AvroType`] is compiled once from a *plan* of an Avro schema (nested tuples built by
//! `schemas/avro_plan.py`, which resolves names and refuses what this codec does not cover),
//! then encodes Python records to Avro binary and decodes them back. The bytes are exactly
//! fastavro's (checked by `tests/unit/test_native_avro.py` on every platform schema); what this
//! saves is fastavro's per-call walk over the schema's dictionaries, which cost the feature
//! worker 10-20 µs per record.
//!
//! Errors name the field they happened in, e.g. `values.amount: expected a float, got str`.

use std::collections::HashMap;

mod columns;
mod detectors;
mod features;
mod rows;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};

/// One node of a compiled schema.
enum Ty {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    Str,
    Enum {
        symbols: Vec<Py<PyString>>,
        index: HashMap<String, i64>,
    },
    Fixed(usize),
    Array(Box<Ty>),
    Map(Box<Ty>),
    Union(Vec<Ty>),
    Record(Vec<Field>),
}

pub(crate) struct Field {
    name: String,
    key: Py<PyString>,
    ty: Ty,
    default: Option<PyObject>,
}

type Res<T> = Result<T, String>;

fn in_field<T>(result: Res<T>, name: &str) -> Res<T> {
    result.map_err(|e| {
        if e.starts_with(':') {
            format!("{name}{e}")
        } else {
            format!("{name}.{e}")
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The plan: Python tuples into a `Ty`.

fn compile(plan: &Bound<'_, PyAny>) -> PyResult<Ty> {
    if let Ok(name) = plan.downcast::<PyString>() {
        return Ok(match name.to_str()? {
            "null" => Ty::Null,
            "boolean" => Ty::Boolean,
            "int" => Ty::Int,
            "long" => Ty::Long,
            "float" => Ty::Float,
            "double" => Ty::Double,
            "bytes" => Ty::Bytes,
            "string" => Ty::Str,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown primitive type {other:?}"
                )))
            }
        });
    }
    let node = plan.downcast::<PyTuple>()?;
    let kind: String = node.get_item(0)?.extract()?;
    match kind.as_str() {
        "enum" => {
            let names: Vec<String> = node.get_item(1)?.extract()?;
            let py = plan.py();
            let index = names
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i as i64))
                .collect();
            let symbols = names
                .iter()
                .map(|s| PyString::intern(py, s).unbind())
                .collect();
            Ok(Ty::Enum { symbols, index })
        }
        "fixed" => Ok(Ty::Fixed(node.get_item(1)?.extract()?)),
        "array" => Ok(Ty::Array(Box::new(compile(&node.get_item(1)?)?))),
        "map" => Ok(Ty::Map(Box::new(compile(&node.get_item(1)?)?))),
        "union" => {
            let branches = node.get_item(1)?;
            let branches = branches.downcast::<PyList>()?;
            Ok(Ty::Union(
                branches
                    .iter()
                    .map(|b| compile(&b))
                    .collect::<PyResult<_>>()?,
            ))
        }
        "record" => {
            let mut fields = Vec::new();
            for spec in node.get_item(1)?.downcast::<PyList>()?.iter() {
                let spec = spec.downcast::<PyTuple>()?.clone();
                let name: String = spec.get_item(0)?.extract()?;
                let has_default: bool = spec.get_item(2)?.extract()?;
                fields.push(Field {
                    key: PyString::intern(plan.py(), &name).unbind(),
                    name,
                    ty: compile(&spec.get_item(1)?)?,
                    default: if has_default {
                        Some(spec.get_item(3)?.unbind())
                    } else {
                        None
                    },
                });
            }
            Ok(Ty::Record(fields))
        }
        other => Err(PyValueError::new_err(format!(
            "unknown schema node {other:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding.

fn put_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, data: &[u8]) {
    put_long(out, data.len() as i64);
    out.extend_from_slice(data);
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn expected<T>(what: &str, v: &Bound<'_, PyAny>) -> Res<T> {
    Err(format!(": expected {what}, got {}", type_name(v)))
}

fn as_long(v: &Bound<'_, PyAny>) -> Res<i64> {
    if v.is_instance_of::<PyInt>() {
        v.extract::<i64>()
            .map_err(|_| ": does not fit a 64-bit long".to_string())
    } else {
        expected("an int", v)
    }
}

fn as_double(v: &Bound<'_, PyAny>) -> Res<f64> {
    if let Ok(f) = v.downcast::<PyFloat>() {
        Ok(f.value())
    } else if v.is_instance_of::<PyInt>() {
        v.extract::<f64>().map_err(|e| format!(": {e}"))
    } else {
        expected("a float", v)
    }
}

fn write(ty: &Ty, v: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Res<()> {
    match ty {
        Ty::Null => {
            if !v.is_none() {
                return expected("None", v);
            }
        }
        Ty::Boolean => match v.downcast::<PyBool>() {
            Ok(b) => out.push(b.is_true() as u8),
            Err(_) => return expected("a bool", v),
        },
        Ty::Int => {
            let n = as_long(v)?;
            if i32::try_from(n).is_err() {
                return Err(format!(": {n} does not fit a 32-bit int"));
            }
            put_long(out, n);
        }
        Ty::Long => put_long(out, as_long(v)?),
        Ty::Float => out.extend_from_slice(&(as_double(v)? as f32).to_le_bytes()),
        Ty::Double => out.extend_from_slice(&as_double(v)?.to_le_bytes()),
        Ty::Bytes => match v.downcast::<PyBytes>() {
            Ok(b) => put_bytes(out, b.as_bytes()),
            Err(_) => return expected("bytes", v),
        },
        Ty::Str => match v.downcast::<PyString>() {
            Ok(s) => put_bytes(out, s.to_str().map_err(|e| format!(": {e}"))?.as_bytes()),
            Err(_) => return expected("a str", v),
        },
        Ty::Enum { index, .. } => {
            let Ok(s) = v.downcast::<PyString>() else {
                return expected("a str", v);
            };
            let symbol = s.to_str().map_err(|e| format!(": {e}"))?;
            match index.get(symbol) {
                Some(i) => put_long(out, *i),
                None => return Err(format!(": {symbol:?} is not a symbol of the enum")),
            }
        }
        Ty::Fixed(size) => match v.downcast::<PyBytes>() {
            Ok(b) if b.as_bytes().len() == *size => out.extend_from_slice(b.as_bytes()),
            Ok(b) => {
                return Err(format!(
                    ": {} bytes for a fixed of {size}",
                    b.as_bytes().len()
                ))
            }
            Err(_) => return expected("bytes", v),
        },
        Ty::Array(item) => {
            let items: Vec<Bound<'_, PyAny>> = if let Ok(list) = v.downcast::<PyList>() {
                list.iter().collect()
            } else if let Ok(tuple) = v.downcast::<PyTuple>() {
                tuple.iter().collect()
            } else {
                return expected("a list", v);
            };
            if !items.is_empty() {
                put_long(out, items.len() as i64);
                for (i, x) in items.iter().enumerate() {
                    in_field(write(item, x, out), &i.to_string())?;
                }
            }
            out.push(0);
        }
        Ty::Map(value) => {
            let Ok(map) = v.downcast::<PyDict>() else {
                return expected("a dict", v);
            };
            if !map.is_empty() {
                put_long(out, map.len() as i64);
                for (k, x) in map.iter() {
                    let Ok(key) = k.downcast::<PyString>() else {
                        return Err(format!(": a key is a {}, not a str", type_name(&k)));
                    };
                    let key = key.to_str().map_err(|e| format!(": {e}"))?;
                    put_bytes(out, key.as_bytes());
                    in_field(write(value, &x, out), key)?;
                }
            }
            out.push(0);
        }
        Ty::Union(branches) => {
            let Some(i) = branch_of(branches, v) else {
                return Err(format!(
                    ": a {} matches no branch of the union",
                    type_name(v)
                ));
            };
            put_long(out, i as i64);
            write(&branches[i], v, out)?;
        }
        Ty::Record(fields) => write_record(fields, v, out)?,
    }
    Ok(())
}

fn write_record(fields: &[Field], v: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Res<()> {
    let py = v.py();
    let dict = v.downcast::<PyDict>().ok();
    let mapping = if dict.is_none() {
        match v.downcast::<PyMapping>() {
            Ok(m) => Some(m),
            Err(_) => return expected("a dict", v),
        }
    } else {
        None
    };
    for field in fields {
        let key = field.key.bind(py);
        let found = match (dict, mapping) {
            (Some(d), _) => d
                .get_item(key)
                .map_err(|e| format!("{}: {e}", field.name))?,
            (_, Some(m)) => match m.contains(key) {
                Ok(true) => Some(
                    m.get_item(key)
                        .map_err(|e| format!("{}: {e}", field.name))?,
                ),
                _ => None,
            },
            _ => None,
        };
        match found {
            Some(x) => in_field(write(&field.ty, &x, out), &field.name)?,
            None => match &field.default {
                Some(d) => in_field(write(&field.ty, d.bind(py), out), &field.name)?,
                None => {
                    return Err(format!(
                        "{}: missing, and the schema gives no default",
                        field.name
                    ))
                }
            },
        }
    }
    Ok(())
}

/// The first branch a Python value can be written as, as fastavro chooses it.
fn branch_of(branches: &[Ty], v: &Bound<'_, PyAny>) -> Option<usize> {
    let fits = |ty: &Ty| -> bool {
        match ty {
            Ty::Null => v.is_none(),
            Ty::Boolean => v.is_instance_of::<PyBool>(),
            Ty::Int | Ty::Long => v.is_instance_of::<PyInt>() && !v.is_instance_of::<PyBool>(),
            // As fastavro: an int goes to the first numeric branch, even a float or double.
            Ty::Float | Ty::Double => {
                v.is_instance_of::<PyFloat>()
                    || (v.is_instance_of::<PyInt>() && !v.is_instance_of::<PyBool>())
            }
            Ty::Bytes => v.is_instance_of::<PyBytes>(),
            Ty::Fixed(size) => v
                .downcast::<PyBytes>()
                .is_ok_and(|b| b.as_bytes().len() == *size),
            Ty::Str => v.is_instance_of::<PyString>(),
            Ty::Enum { index, .. } => v
                .downcast::<PyString>()
                .is_ok_and(|s| s.to_str().is_ok_and(|s| index.contains_key(s))),
            Ty::Array(_) => v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>(),
            Ty::Map(_) => v.is_instance_of::<PyDict>(),
            Ty::Record(fields) => v.downcast::<PyDict>().is_ok_and(|d| {
                fields
                    .iter()
                    .all(|f| f.default.is_some() || d.contains(f.key.bind(v.py())).unwrap_or(false))
            }),
            Ty::Union(_) => false,
        }
    };
    branches.iter().position(fits)
}

// ---------------------------------------------------------------------------------------------
// Decoding.

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn truncated(&self) -> String {
        format!(
            ": the record ends early (byte {} of {})",
            self.pos,
            self.buf.len()
        )
    }

    fn long(&mut self) -> Res<i64> {
        let mut z: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.truncated());
            };
            self.pos += 1;
            if shift > 63 {
                return Err(format!(
                    ": a varint longer than 10 bytes at byte {}",
                    self.pos
                ));
            }
            z |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
            shift += 7;
        }
    }

    fn take(&mut self, n: usize) -> Res<&[u8]> {
        if self.buf.len() - self.pos < n {
            return Err(self.truncated());
        }
        let slice = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn length(&mut self) -> Res<usize> {
        let n = self.long()?;
        if n < 0 {
            return Err(format!(": negative length {n} at byte {}", self.pos));
        }
        Ok(n as usize)
    }

    fn str(&mut self) -> Res<&str> {
        let n = self.length()?;
        let at = self.pos;
        std::str::from_utf8(self.take(n)?).map_err(|e| format!(": invalid UTF-8 at byte {at}: {e}"))
    }

    /// The item count of the next block of an array or map (0 ends it).
    fn block(&mut self, min_item_size: usize) -> Res<usize> {
        let mut count = self.long()?;
        if count < 0 {
            count = count
                .checked_neg()
                .ok_or_else(|| ": bad block count".to_string())?;
            self.long()?; // the block's size in bytes, which a reader may skip by
        }
        let count = count as usize;
        let left = self.buf.len() - self.pos;
        // Each item takes at least `min_item_size` bytes; items of none (nulls) are capped
        // loosely, so a corrupt count fails here instead of looping for ever.
        let most = left.checked_div(min_item_size).unwrap_or(left * 8 + 1024);
        if count > most {
            return Err(format!(": a block of {count} items in {left} bytes"));
        }
        Ok(count)
    }

    /// Reads an array's or map's items, block by block, with `item` (one call per item, given
    /// its index).
    fn items(
        &mut self,
        min_item_size: usize,
        mut item: impl FnMut(&mut Self, usize) -> Res<()>,
    ) -> Res<()> {
        let mut index = 0;
        loop {
            let count = self.block(min_item_size)?;
            if count == 0 {
                return Ok(());
            }
            for _ in 0..count {
                item(self, index)?;
                index += 1;
            }
        }
    }
}

fn min_size(ty: &Ty) -> usize {
    match ty {
        Ty::Null => 0,
        Ty::Float => 4,
        Ty::Double => 8,
        Ty::Fixed(n) => *n,
        Ty::Record(fields) => fields.iter().map(|f| min_size(&f.ty)).sum(),
        _ => 1,
    }
}

fn read<'py>(ty: &Ty, r: &mut Reader<'_>, py: Python<'py>) -> Res<Bound<'py, PyAny>> {
    Ok(match ty {
        Ty::Null => py.None().into_bound(py),
        Ty::Boolean => match r.take(1)?[0] {
            0 => PyBool::new(py, false).to_owned().into_any(),
            1 => PyBool::new(py, true).to_owned().into_any(),
            b => return Err(format!(": {b} is not a boolean")),
        },
        Ty::Int => {
            let n = r.long()?;
            if i32::try_from(n).is_err() {
                return Err(format!(": {n} does not fit a 32-bit int"));
            }
            n.into_pyobject(py)
                .map_err(|e| format!(": {e}"))?
                .into_any()
        }
        Ty::Long => r
            .long()?
            .into_pyobject(py)
            .map_err(|e| format!(": {e}"))?
            .into_any(),
        Ty::Float => {
            let b: [u8; 4] = r.take(4)?.try_into().expect("4 bytes");
            PyFloat::new(py, f32::from_le_bytes(b) as f64).into_any()
        }
        Ty::Double => {
            let b: [u8; 8] = r.take(8)?.try_into().expect("8 bytes");
            PyFloat::new(py, f64::from_le_bytes(b)).into_any()
        }
        Ty::Bytes => {
            let n = r.length()?;
            PyBytes::new(py, r.take(n)?).into_any()
        }
        Ty::Str => PyString::new(py, r.str()?).into_any(),
        Ty::Enum { symbols, .. } => {
            let i = r.long()?;
            match usize::try_from(i).ok().and_then(|i| symbols.get(i)) {
                Some(s) => s.bind(py).clone().into_any(),
                None => return Err(format!(": enum index {i} of {} symbols", symbols.len())),
            }
        }
        Ty::Fixed(size) => PyBytes::new(py, r.take(*size)?).into_any(),
        Ty::Array(item) => {
            let list = PyList::empty(py);
            r.items(min_size(item), |r, i| {
                let x = in_field(read(item, r, py), &i.to_string())?;
                list.append(x).map_err(|e| format!(": {e}"))
            })?;
            list.into_any()
        }
        Ty::Map(value) => {
            let dict = PyDict::new(py);
            r.items(min_size(value) + 1, |r, _| {
                let key = PyString::new(py, r.str()?);
                let x = in_field(read(value, r, py), &key.to_string())?;
                dict.set_item(key, x).map_err(|e| format!(": {e}"))
            })?;
            dict.into_any()
        }
        Ty::Union(branches) => {
            let i = r.long()?;
            match usize::try_from(i).ok().and_then(|i| branches.get(i)) {
                Some(branch) => read(branch, r, py)?,
                None => return Err(format!(": union branch {i} of {}", branches.len())),
            }
        }
        Ty::Record(fields) => {
            let dict = PyDict::new(py);
            for field in fields {
                let x = in_field(read(&field.ty, r, py), &field.name)?;
                dict.set_item(field.key.bind(py), x)
                    .map_err(|e| format!(": {e}"))?;
            }
            dict.into_any()
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The Python class.

/// One Avro schema, compiled: ``encode(datum, prefix=b"")`` and ``decode(data, start=0)``.
#[pyclass(frozen, module = "headwater_native")]
struct AvroType {
    ty: Ty,
    name: String,
}

fn failure(name: &str, message: String) -> PyErr {
    PyValueError::new_err(described(name, &message))
}

/// A decoding error as the schema's name and the path to the field that failed.
fn described(name: &str, message: &str) -> String {
    let message = message
        .strip_prefix(':')
        .map(str::trim_start)
        .unwrap_or(message);
    format!("{name}: {message}")
}

#[pymethods]
impl AvroType {
    #[new]
    #[pyo3(signature = (plan, name = "record"))]
    fn new(plan: &Bound<'_, PyAny>, name: &str) -> PyResult<Self> {
        Ok(AvroType {
            ty: compile(plan)?,
            name: name.to_string(),
        })
    }

    /// The Avro binary encoding of ``datum``, after ``prefix`` (e.g. single-object framing).
    #[pyo3(signature = (datum, prefix = None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        datum: &Bound<'py, PyAny>,
        prefix: Option<&[u8]>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::with_capacity(256);
        if let Some(p) = prefix {
            out.extend_from_slice(p);
        }
        write(&self.ty, datum, &mut out).map_err(|e| failure(&self.name, e))?;
        Ok(PyBytes::new(py, &out))
    }

    /// The datum encoded in ``data[start:]``, which it must fill exactly.
    #[pyo3(signature = (data, start = 0))]
    fn decode<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        start: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        if start > data.len() {
            return Err(PyTypeError::new_err(format!(
                "start {start} is past the data's end"
            )));
        }
        let mut reader = Reader {
            buf: data,
            pos: start,
        };
        let datum = read(&self.ty, &mut reader, py).map_err(|e| failure(&self.name, e))?;
        if reader.pos != data.len() {
            let extra = data.len() - reader.pos;
            return Err(failure(
                &self.name,
                format!(": {extra} byte(s) left after the record"),
            ));
        }
        Ok(datum)
    }

    /// Each field of the records in ``values`` (a list of bytes, each read from ``start``) as
    /// ``(name, column)`` in Arrow's layout (see `columns.rs`), and ``(index, why)`` of each
    /// record that does not decode (left out of the columns, why as :meth:`decode` says it);
    /// None where this schema is not a record of the types the columns cover.
    #[pyo3(signature = (values, start = 0))]
    fn decode_columns<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyList>,
        start: usize,
    ) -> PyResult<Option<columns::Decoded<'py>>> {
        let decoded = columns::decode_columns(py, &self.ty, values, start)
            .map_err(|e| failure(&self.name, e))?;
        Ok(decoded.map(|(columns, failures)| {
            let failures = failures
                .into_iter()
                .map(|(index, why)| (index, described(&self.name, &why)))
                .collect();
            (columns, failures)
        }))
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }
}

#[pymodule]
fn headwater_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AvroType>()?;
    m.add_class::<features::FeatureReader>()?;
    m.add_class::<rows::RowMatrix>()?;
    m.add_class::<detectors::PageHinkley>()?;
    Ok(())
}
