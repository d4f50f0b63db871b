//! Records decoded straight into columns: the sink's batch path.
//!
//! A batch of records of one record schema becomes one column per field, each in Arrow's
//! memory layout (a validity bitmap, offsets, values), so Python wraps the buffers as Arrow
//! arrays without a Python object per value (`streams/columnar.py`; what it must equal, the
//! records decoded one by one and turned into columns, is checked by
//! `tests/unit/test_sink_columnar.py`).
//!
//! Covered: booleans, ints and longs (as 64-bit), floats and doubles (as 64-bit), strings and
//! bytes (as binary), arrays and maps of those, and a union of null with one of those. Any
//! other field (an enum, a fixed, a nested record, a wider union) makes the schema not
//! covered, and the caller decodes record by record.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::{in_field, min_size, Reader, Res, Ty};

/// A validity bitmap, kept only once a null turns up.
struct Validity {
    bits: Option<Vec<bool>>,
    len: usize,
}

impl Validity {
    fn new() -> Self {
        Validity { bits: None, len: 0 }
    }

    fn push(&mut self, valid: bool) {
        match (&mut self.bits, valid) {
            (Some(bits), _) => bits.push(valid),
            (None, true) => {}
            (None, false) => {
                let mut bits = vec![true; self.len];
                bits.push(false);
                self.bits = Some(bits);
            }
        }
        self.len += 1;
    }
}

/// One column being filled, in the shape of its Arrow array.
enum Col {
    Long(Vec<i64>),
    Double(Vec<f64>),
    Bool(Vec<bool>),
    /// `text`: UTF-8 checked (an Avro string), else bytes.
    Binary {
        text: bool,
        offsets: Vec<i32>,
        data: Vec<u8>,
    },
    List {
        offsets: Vec<i32>,
        item: Box<Column>,
    },
    Map {
        offsets: Vec<i32>,
        keys: Box<Column>,
        values: Box<Column>,
    },
}

struct Column {
    validity: Validity,
    col: Col,
}

impl Column {
    /// Back to its first `len` values: what a record that failed halfway pushed is dropped
    /// (its values, and the items, keys and bytes under them).
    fn truncate(&mut self, len: usize) {
        if let Some(bits) = &mut self.validity.bits {
            bits.truncate(len);
        }
        self.validity.len = self.validity.len.min(len);
        match &mut self.col {
            Col::Long(data) => data.truncate(len),
            Col::Double(data) => data.truncate(len),
            Col::Bool(data) => data.truncate(len),
            Col::Binary { offsets, data, .. } => {
                offsets.truncate(len + 1);
                data.truncate(offsets[len] as usize);
            }
            Col::List { offsets, item } => {
                offsets.truncate(len + 1);
                item.truncate(offsets[len] as usize);
            }
            Col::Map {
                offsets,
                keys,
                values,
            } => {
                offsets.truncate(len + 1);
                let items = offsets[len] as usize;
                keys.truncate(items);
                values.truncate(items);
            }
        }
    }
}

/// How a value of a column is read: its type, and for `[null, T]` which branch is null.
enum Shape<'a> {
    Plain(&'a Ty),
    Nullable { null: i64, ty: &'a Ty },
}

fn shape(ty: &Ty) -> Option<Shape<'_>> {
    if let Ty::Union(branches) = ty {
        if branches.len() != 2 {
            return None;
        }
        let null = branches.iter().position(|b| matches!(b, Ty::Null))?;
        let other = &branches[1 - null];
        return empty(other).map(|_| Shape::Nullable {
            null: null as i64,
            ty: other,
        });
    }
    empty(ty).map(|_| Shape::Plain(ty))
}

/// An empty column for values of `ty`; None where `ty` is not covered.
fn empty(ty: &Ty) -> Option<Column> {
    let col = match ty {
        Ty::Boolean => Col::Bool(Vec::new()),
        Ty::Int | Ty::Long => Col::Long(Vec::new()),
        Ty::Float | Ty::Double => Col::Double(Vec::new()),
        Ty::Str | Ty::Bytes => Col::Binary {
            text: matches!(ty, Ty::Str),
            offsets: vec![0],
            data: Vec::new(),
        },
        Ty::Array(item) => {
            shape(item)?;
            Col::List {
                offsets: vec![0],
                item: Box::new(empty(unwrapped(item))?),
            }
        }
        Ty::Map(value) => {
            shape(value)?;
            Col::Map {
                offsets: vec![0],
                keys: Box::new(empty(&Ty::Str)?),
                values: Box::new(empty(unwrapped(value))?),
            }
        }
        _ => return None,
    };
    Some(Column {
        validity: Validity::new(),
        col,
    })
}

fn unwrapped(ty: &Ty) -> &Ty {
    match shape(ty) {
        Some(Shape::Nullable { ty, .. }) => ty,
        _ => ty,
    }
}

/// The error of a batch too large for Arrow's 32-bit offsets: the batch's, not a record's.
const TOO_LARGE: &str = ": a column of more than 2 GiB";

fn offset(n: usize) -> Res<i32> {
    i32::try_from(n).map_err(|_| TOO_LARGE.to_string())
}

/// A fixed-size value of `ty` pushed as it is read (no validity: the caller's).
fn push_value(ty: &Ty, col: &mut Col, r: &mut Reader<'_>) -> Res<()> {
    match (ty, col) {
        (Ty::Boolean, Col::Bool(data)) => match r.take(1)?[0] {
            0 => data.push(false),
            1 => data.push(true),
            b => return Err(format!(": {b} is not a boolean")),
        },
        (Ty::Int, Col::Long(data)) => {
            let n = r.long()?;
            if i32::try_from(n).is_err() {
                return Err(format!(": {n} does not fit a 32-bit int"));
            }
            data.push(n);
        }
        (Ty::Long, Col::Long(data)) => data.push(r.long()?),
        (Ty::Float, Col::Double(data)) => {
            let b: [u8; 4] = r.take(4)?.try_into().expect("4 bytes");
            data.push(f32::from_le_bytes(b) as f64);
        }
        (Ty::Double, Col::Double(data)) => {
            let b: [u8; 8] = r.take(8)?.try_into().expect("8 bytes");
            data.push(f64::from_le_bytes(b));
        }
        (Ty::Str, Col::Binary { offsets, data, .. }) => {
            data.extend_from_slice(r.str()?.as_bytes());
            offsets.push(offset(data.len())?);
        }
        (Ty::Bytes, Col::Binary { offsets, data, .. }) => {
            let n = r.length()?;
            data.extend_from_slice(r.take(n)?);
            offsets.push(offset(data.len())?);
        }
        (Ty::Array(item), Col::List { offsets, item: col }) => {
            r.items(min_size(item), |r, i| {
                in_field(push(item, col, r), &i.to_string())
            })?;
            offsets.push(offset(col.validity.len)?);
        }
        (
            Ty::Map(value),
            Col::Map {
                offsets,
                keys,
                values,
            },
        ) => {
            r.items(min_size(value) + 1, |r, _| {
                push(&Ty::Str, keys, r)?;
                // Named by its key, as the record reader names it (built only on a failure).
                push(value, values, r).or_else(|e| in_field(Err(e), &last_text(keys)))
            })?;
            offsets.push(offset(keys.validity.len)?);
        }
        _ => return Err(": a type the columns do not cover".to_string()),
    }
    Ok(())
}

/// The last value of a string column, as text.
fn last_text(column: &Column) -> String {
    match &column.col {
        Col::Binary { offsets, data, .. } => {
            let end = *offsets.last().expect("offsets start at 0") as usize;
            let start = offsets
                .get(offsets.len().wrapping_sub(2))
                .map_or(0, |&o| o as usize);
            String::from_utf8_lossy(&data[start..end]).into_owned()
        }
        _ => String::new(),
    }
}

/// The placeholder a null leaves in the values (Arrow keeps a slot under a null).
fn push_default(col: &mut Col) {
    match col {
        Col::Long(data) => data.push(0),
        Col::Double(data) => data.push(0.0),
        Col::Bool(data) => data.push(false),
        Col::Binary { offsets, .. } | Col::List { offsets, .. } | Col::Map { offsets, .. } => {
            offsets.push(*offsets.last().expect("offsets start at 0"))
        }
    }
}

/// One value of `ty` (a covered type, or a union of null and one) read into `column`.
fn push(ty: &Ty, column: &mut Column, r: &mut Reader<'_>) -> Res<()> {
    match shape(ty) {
        Some(Shape::Plain(ty)) => {
            push_value(ty, &mut column.col, r)?;
            column.validity.push(true);
        }
        Some(Shape::Nullable { null, ty }) => {
            let i = r.long()?;
            if i == null {
                push_default(&mut column.col);
                column.validity.push(false);
            } else if i == 1 - null {
                push_value(ty, &mut column.col, r)?;
                column.validity.push(true);
            } else {
                return Err(format!(": union branch {i} of 2"));
            }
        }
        None => return Err(": a type the columns do not cover".to_string()),
    }
    Ok(())
}

fn bitmap<'py>(py: Python<'py>, bits: &[bool]) -> Bound<'py, PyBytes> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
        out[i / 8] |= 1 << (i % 8);
    }
    PyBytes::new(py, &out)
}

fn le_bytes<'py, T: Copy, const N: usize>(
    py: Python<'py>,
    values: &[T],
    to: fn(T) -> [u8; N],
) -> Bound<'py, PyBytes> {
    let mut out = Vec::with_capacity(values.len() * N);
    for v in values {
        out.extend_from_slice(&to(*v));
    }
    PyBytes::new(py, &out)
}

/// A column as `(kind, length, validity or None, buffers, children)`, kind one of `long`,
/// `double`, `bool`, `string`, `binary`, `list`, `map` (children: the items; the keys and the values).
fn to_python<'py>(py: Python<'py>, column: &Column) -> PyResult<Bound<'py, PyTuple>> {
    let validity = match &column.validity.bits {
        Some(bits) => bitmap(py, bits).into_any(),
        None => py.None().into_bound(py),
    };
    let offsets = |o: &[i32]| le_bytes(py, o, i32::to_le_bytes);
    let (kind, buffers, children): (&str, Vec<Bound<'py, PyBytes>>, Vec<Bound<'py, PyTuple>>) =
        match &column.col {
            Col::Long(data) => ("long", vec![le_bytes(py, data, i64::to_le_bytes)], vec![]),
            Col::Double(data) => ("double", vec![le_bytes(py, data, f64::to_le_bytes)], vec![]),
            Col::Bool(data) => ("bool", vec![bitmap(py, data)], vec![]),
            Col::Binary {
                text,
                offsets: o,
                data,
            } => {
                let kind = if *text { "string" } else { "binary" };
                (kind, vec![offsets(o), PyBytes::new(py, data)], vec![])
            }
            Col::List { offsets: o, item } => {
                ("list", vec![offsets(o)], vec![to_python(py, item)?])
            }
            Col::Map {
                offsets: o,
                keys,
                values,
            } => (
                "map",
                vec![offsets(o)],
                vec![to_python(py, keys)?, to_python(py, values)?],
            ),
        };
    PyTuple::new(
        py,
        [
            PyString::new(py, kind).into_any(),
            column.validity.len.into_pyobject(py)?.into_any(),
            validity,
            PyList::new(py, buffers)?.into_any(),
            PyList::new(py, children)?.into_any(),
        ],
    )
}

/// A record that does not decode: its index in the values, and why (the field's path, as
/// `in_field` names it).
pub(crate) type Failure = (usize, String);

/// The columns, as `(name, column)` pairs, and the records left out of them.
pub(crate) type Decoded<'py> = (Bound<'py, PyList>, Vec<Failure>);

/// Each field of a record schema `ty` as a column of the records in `values` (each read from
/// `start` to its end), and the records that do not decode, left out of the columns; None where
/// the schema is not covered. One bad record costs the batch nothing but its own row: the
/// columns are cut back to the records before it, and decoding goes on with the next.
pub(crate) fn decode_columns<'py>(
    py: Python<'py>,
    ty: &Ty,
    values: &Bound<'py, PyList>,
    start: usize,
) -> Result<Option<Decoded<'py>>, String> {
    let Ty::Record(fields) = ty else {
        return Ok(None);
    };
    let mut columns = Vec::with_capacity(fields.len());
    for field in fields {
        if shape(&field.ty).is_none() {
            return Ok(None);
        }
        columns.push(empty(unwrapped(&field.ty)).expect("a covered type"));
    }
    let mut failures = Vec::new();
    let mut rows = 0;
    for (index, value) in values.iter().enumerate() {
        let read = match value.downcast::<PyBytes>() {
            Ok(value) => push_record(fields, &mut columns, value.as_bytes(), start),
            Err(_) => Err(": not bytes".to_string()),
        };
        match read {
            Ok(()) => rows += 1,
            Err(error) if error.ends_with(TOO_LARGE) => return Err(error),
            Err(error) => {
                for column in columns.iter_mut() {
                    column.truncate(rows);
                }
                failures.push((index, error));
            }
        }
    }
    let out = PyList::empty(py);
    for (field, column) in fields.iter().zip(&columns) {
        let pair = (
            field.key.bind(py),
            to_python(py, column).map_err(|e| e.to_string())?,
        );
        out.append(pair).map_err(|e| e.to_string())?;
    }
    Ok(Some((out, failures)))
}

/// One record's fields pushed onto their columns (partly, where it fails: the caller cuts
/// them back).
fn push_record(
    fields: &[crate::Field],
    columns: &mut [Column],
    data: &[u8],
    start: usize,
) -> Res<()> {
    if start > data.len() {
        return Err(format!(": shorter than its {start}-byte header"));
    }
    let mut r = Reader {
        buf: data,
        pos: start,
    };
    for (field, column) in fields.iter().zip(columns.iter_mut()) {
        in_field(push(&field.ty, column, &mut r), &field.name)?;
    }
    if r.pos != data.len() {
        let extra = data.len() - r.pos;
        return Err(format!(": {extra} byte(s) left after the record"));
    }
    Ok(())
}
