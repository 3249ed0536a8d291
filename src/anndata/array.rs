//! Typed reads of one array of the source — a Zarr array through `zarrs`, or an HDF5 dataset
//! of an `.h5ad` file — as ranged subsets in the stored type (AnnData arrays come in every
//! int/uint/float width; [`Numbers`] converts).

use std::ops::Range;
use std::sync::Arc;

use zarrs::array::data_type::{
    BoolDataType, Float16DataType, Float32DataType, Float64DataType, Int8DataType, Int16DataType,
    Int32DataType, Int64DataType, StringDataType, UInt8DataType, UInt16DataType, UInt32DataType,
    UInt64DataType,
};
use zarrs::array::{Array, ArrayMetadata, ArraySubset};

use super::AnnDataError;
use crate::memory::TooLarge;
use crate::store::ObjectStoreZarr;

/// The element type of an array, as far as AnnData reading cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementKind {
    /// bool
    Bool,
    /// Signed integer of the given byte width.
    Int(u8),
    /// Unsigned integer of the given byte width.
    UInt(u8),
    /// Float of the given byte width (2, 4 or 8).
    Float(u8),
    /// Variable-length UTF-8 string.
    String,
    /// Anything else (named).
    Other,
}

impl ElementKind {
    /// Whether values are numbers (bools excluded).
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            ElementKind::Int(_) | ElementKind::UInt(_) | ElementKind::Float(_)
        )
    }
}

/// Values of a numeric (or bool) array, in their stored type.
#[derive(Debug, Clone)]
pub enum Numbers {
    /// bool
    Bool(Vec<bool>),
    /// i8
    I8(Vec<i8>),
    /// i16
    I16(Vec<i16>),
    /// i32
    I32(Vec<i32>),
    /// i64
    I64(Vec<i64>),
    /// u8
    U8(Vec<u8>),
    /// u16
    U16(Vec<u16>),
    /// u32
    U32(Vec<u32>),
    /// u64
    U64(Vec<u64>),
    /// f16 (widened on read)
    F16(Vec<f32>),
    /// f32
    F32(Vec<f32>),
    /// f64
    F64(Vec<f64>),
}

/// `$body` with `$v` bound to the values of whichever variant `$self` is (a slice of its
/// element type): one generic computation over every stored type.
macro_rules! map_numbers {
    ($self:expr, $v:ident => $body:expr) => {
        match $self {
            $crate::anndata::Numbers::Bool($v) => $body,
            $crate::anndata::Numbers::I8($v) => $body,
            $crate::anndata::Numbers::I16($v) => $body,
            $crate::anndata::Numbers::I32($v) => $body,
            $crate::anndata::Numbers::I64($v) => $body,
            $crate::anndata::Numbers::U8($v) => $body,
            $crate::anndata::Numbers::U16($v) => $body,
            $crate::anndata::Numbers::U32($v) => $body,
            $crate::anndata::Numbers::U64($v) => $body,
            $crate::anndata::Numbers::F16($v) => $body,
            $crate::anndata::Numbers::F32($v) => $body,
            $crate::anndata::Numbers::F64($v) => $body,
        }
    };
}
pub(crate) use map_numbers;

/// Why integer values could not be used as offsets or positions (see
/// [`Numbers::to_indices_below`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexValuesError {
    /// The values are not integers.
    NotIntegers,
    /// The value at `position` is negative or not below the bound.
    OutOfRange {
        /// Position of the first offending value.
        position: usize,
        /// Its value.
        value: i128,
    },
    /// There is no memory for the converted values.
    Allocation,
}

/// An unsigned integer type positions are converted to.
pub trait IndexType: Copy + Send + 'static {
    /// `v` as this type (`v` is below a bound that fits).
    fn from_u64(v: u64) -> Self;
    /// The largest bound (exclusive) this type can hold.
    const LIMIT: u128;
}

impl IndexType for u32 {
    fn from_u64(v: u64) -> Self {
        v as u32
    }
    const LIMIT: u128 = 1 << 32;
}

impl IndexType for u64 {
    fn from_u64(v: u64) -> Self {
        v
    }
    const LIMIT: u128 = 1 << 64;
}

fn indices_below<T: Copy + Into<i128>, O: IndexType>(
    values: &[T],
    bound: u64,
) -> Result<Vec<O>, IndexValuesError> {
    let bound = u128::from(bound).min(O::LIMIT) as i128;
    let mut out = Vec::new();
    out.try_reserve_exact(values.len())
        .map_err(|_| IndexValuesError::Allocation)?;
    for (position, &v) in values.iter().enumerate() {
        let value: i128 = v.into();
        if value < 0 || value >= bound {
            return Err(IndexValuesError::OutOfRange { position, value });
        }
        out.push(O::from_u64(value as u64));
    }
    Ok(out)
}

/// Lossy numeric conversion with NumPy `astype` semantics (round to nearest for floats).
trait AsNumber: Copy {
    fn as_f32(self) -> f32;
    fn as_f64(self) -> f64;
    fn as_i64(self) -> i64;
}

macro_rules! impl_as_number {
    ($($t:ty),*) => {$(
        impl AsNumber for $t {
            fn as_f32(self) -> f32 { self as f32 }
            fn as_f64(self) -> f64 { self as f64 }
            fn as_i64(self) -> i64 { self as i64 }
        }
    )*};
}
impl_as_number!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

impl AsNumber for bool {
    fn as_f32(self) -> f32 {
        f32::from(u8::from(self))
    }
    fn as_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn as_i64(self) -> i64 {
        i64::from(self)
    }
}

impl Numbers {
    /// Number of values.
    pub fn len(&self) -> usize {
        map_numbers!(self, v => v.len())
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values converted to f32 like `numpy.astype(float32)`.
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Numbers::F32(v) | Numbers::F16(v) => v.clone(),
            other => map_numbers!(other, v => v.iter().map(|x| x.as_f32()).collect()),
        }
    }

    /// Values converted into f32, consuming self (no copy for f32 data).
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            Numbers::F32(v) | Numbers::F16(v) => v,
            other => other.to_f32(),
        }
    }

    /// Values converted to f64.
    pub fn to_f64(&self) -> Vec<f64> {
        map_numbers!(self, v => v.iter().map(|x| x.as_f64()).collect())
    }

    /// Values converted to i64 (floats truncated; callers use this for integer arrays only).
    pub fn to_i64(&self) -> Vec<i64> {
        map_numbers!(self, v => v.iter().map(|x| x.as_i64()).collect())
    }

    /// Integer values as positions of type `O`, each checked to lie in `0..bound` (and to fit
    /// in `O`): the offsets and indices of a sparse matrix. Fails on the first value that does
    /// not, on non-integer values, and when there is no memory for the result (never aborts).
    pub fn to_indices_below<O: IndexType>(&self, bound: u64) -> Result<Vec<O>, IndexValuesError> {
        match self {
            Numbers::I8(v) => indices_below(v, bound),
            Numbers::I16(v) => indices_below(v, bound),
            Numbers::I32(v) => indices_below(v, bound),
            Numbers::I64(v) => indices_below(v, bound),
            Numbers::U8(v) => indices_below(v, bound),
            Numbers::U16(v) => indices_below(v, bound),
            Numbers::U32(v) => indices_below(v, bound),
            Numbers::U64(v) => indices_below(v, bound),
            Numbers::Bool(_) | Numbers::F16(_) | Numbers::F32(_) | Numbers::F64(_) => {
                Err(IndexValuesError::NotIntegers)
            }
        }
    }

    /// Whether the values are floats.
    pub fn is_float(&self) -> bool {
        matches!(self, Numbers::F16(_) | Numbers::F32(_) | Numbers::F64(_))
    }
}

/// Where an array's bytes come from.
enum Backing {
    Zarr(Box<Array<ObjectStoreZarr>>),
    #[cfg(feature = "h5ad")]
    Hdf5(super::hdf5::H5Array),
}

/// Largest single read of an array opened outside a [`Dataset`](crate::dataset::Dataset)
/// (whose reads are limited by its memory budget instead): 1 GiB.
pub const DEFAULT_READ_LIMIT: u64 = 1 << 30;

/// One opened array of the store (a Zarr array or an HDF5 dataset).
///
/// Every read is checked before anything is allocated: the values it asks for must fit in
/// the array's read limit (see [`ZArray::with_read_limit`]), so a store declaring 10¹² rows
/// gets a [`TooLarge`] error, never an allocation failure.
pub struct ZArray {
    key: String,
    backing: Backing,
    shape: Vec<u64>,
    kind: ElementKind,
    read_limit: u64,
}

impl std::fmt::Debug for ZArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZArray")
            .field("key", &self.key)
            .field("shape", &self.shape)
            .field("kind", &self.kind)
            .field("read_limit", &self.read_limit)
            .finish()
    }
}

fn element_kind(array: &Array<ObjectStoreZarr>) -> ElementKind {
    let dt = array.data_type();
    if dt.is::<BoolDataType>() {
        ElementKind::Bool
    } else if dt.is::<Int8DataType>() {
        ElementKind::Int(1)
    } else if dt.is::<Int16DataType>() {
        ElementKind::Int(2)
    } else if dt.is::<Int32DataType>() {
        ElementKind::Int(4)
    } else if dt.is::<Int64DataType>() {
        ElementKind::Int(8)
    } else if dt.is::<UInt8DataType>() {
        ElementKind::UInt(1)
    } else if dt.is::<UInt16DataType>() {
        ElementKind::UInt(2)
    } else if dt.is::<UInt32DataType>() {
        ElementKind::UInt(4)
    } else if dt.is::<UInt64DataType>() {
        ElementKind::UInt(8)
    } else if dt.is::<Float16DataType>() {
        ElementKind::Float(2)
    } else if dt.is::<Float32DataType>() {
        ElementKind::Float(4)
    } else if dt.is::<Float64DataType>() {
        ElementKind::Float(8)
    } else if dt.is::<StringDataType>() {
        ElementKind::String
    } else {
        ElementKind::Other
    }
}

impl ZArray {
    /// Open the array at `key` from already-known metadata (no store read).
    pub fn new(
        storage: Arc<ObjectStoreZarr>,
        key: &str,
        metadata: ArrayMetadata,
    ) -> Result<Self, AnnDataError> {
        let node_path = format!("/{}", key.trim_matches('/'));
        let array = Array::new_with_metadata(storage, &node_path, metadata).map_err(|e| {
            AnnDataError::Metadata {
                key: key.to_string(),
                reason: e.to_string(),
            }
        })?;
        let kind = element_kind(&array);
        Ok(ZArray {
            key: key.to_string(),
            shape: array.shape().to_vec(),
            backing: Backing::Zarr(Box::new(array)),
            kind,
            read_limit: DEFAULT_READ_LIMIT,
        })
    }

    /// Limit every read of this array to `bytes` of values in memory.
    pub fn with_read_limit(mut self, bytes: u64) -> Self {
        self.read_limit = bytes;
        self
    }

    /// Bytes one value takes once read (f16 is widened to f32; a string is at least its
    /// `String` header).
    pub fn value_size(&self) -> u64 {
        match self.kind {
            ElementKind::Bool => 1,
            ElementKind::Float(2) => 4,
            ElementKind::Int(w) | ElementKind::UInt(w) | ElementKind::Float(w) => u64::from(w),
            ElementKind::String => std::mem::size_of::<String>() as u64,
            ElementKind::Other => 8,
        }
    }

    /// `Ok` when reading `ranges` fits in the read limit (checked arithmetic throughout), and
    /// so does one decoded chunk of a Zarr array (zarrs decodes whole chunks: a declared chunk
    /// shape of 10¹² would otherwise be allocated to read ten values).
    fn check_read(&self, ranges: &[Range<u64>]) -> Result<(), AnnDataError> {
        let values = ranges
            .iter()
            .try_fold(1u64, |n, r| n.checked_mul(r.end.saturating_sub(r.start)));
        self.check_values(values, || {
            format!(
                "reading {} values of `{}`",
                values.map_or_else(|| "more than 2^64".into(), |n| n.to_string()),
                self.key
            )
        })?;
        #[allow(irrefutable_let_patterns)] // one variant without the `h5ad` feature
        if let Backing::Zarr(array) = &self.backing {
            let origin = vec![0; array.dimensionality()];
            let chunk = array
                .chunk_shape(&origin)
                .ok()
                .and_then(|shape| shape.iter().try_fold(1u64, |n, d| n.checked_mul(d.get())));
            self.check_values(chunk, || {
                format!(
                    "decoding one chunk of `{}` ({} values)",
                    self.key,
                    chunk.map_or_else(|| "more than 2^64".into(), |n| n.to_string())
                )
            })?;
        }
        Ok(())
    }

    fn check_values(
        &self,
        values: Option<u64>,
        what: impl FnOnce() -> String,
    ) -> Result<(), AnnDataError> {
        let bytes = values.and_then(|n| n.checked_mul(self.value_size()));
        match bytes {
            Some(b) if b <= self.read_limit => Ok(()),
            _ => Err(AnnDataError::TooLarge(TooLarge::OverBudget {
                what: what(),
                needed: bytes,
                budget: self.read_limit,
            })),
        }
    }

    /// Wrap an HDF5 dataset.
    #[cfg(feature = "h5ad")]
    pub(crate) fn from_hdf5(array: super::hdf5::H5Array) -> Self {
        ZArray {
            key: array.key().to_string(),
            shape: array.shape().to_vec(),
            kind: array.kind(),
            backing: Backing::Hdf5(array),
            read_limit: DEFAULT_READ_LIMIT,
        }
    }

    /// Store key of the array.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Shape.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// Element kind.
    pub fn kind(&self) -> ElementKind {
        self.kind
    }

    /// Human-readable data type name (for messages).
    pub fn dtype_name(&self) -> String {
        format!("{:?}", self.kind)
    }

    /// Chunk shape of the first chunk (for layout decisions).
    pub fn chunk_shape(&self) -> Vec<u64> {
        match &self.backing {
            Backing::Zarr(array) => {
                let origin = vec![0; array.dimensionality()];
                array
                    .chunk_shape(&origin)
                    .map(|s| s.iter().map(|d| d.get()).collect())
                    .unwrap_or_default()
            }
            #[cfg(feature = "h5ad")]
            Backing::Hdf5(array) => array.chunk_shape(),
        }
    }

    fn read_error(&self, source: zarrs::array::ArrayError) -> AnnDataError {
        AnnDataError::Chunks {
            key: self.key.clone(),
            source: Box::new(source),
        }
    }

    /// Require a 1-D array and return its length.
    pub fn len_1d(&self) -> Result<u64, AnnDataError> {
        match self.shape() {
            [n] => Ok(*n),
            other => Err(AnnDataError::Shape {
                key: self.key.clone(),
                expected: "a 1-D array".into(),
                found: other.to_vec(),
            }),
        }
    }

    fn subset_1d(&self, range: Option<Range<u64>>) -> Result<Range<u64>, AnnDataError> {
        let n = self.len_1d()?;
        let range = range.unwrap_or(0..n);
        if range.start > range.end || range.end > n {
            return Err(AnnDataError::Shape {
                key: self.key.clone(),
                expected: format!("at least {} elements", range.end),
                found: vec![n],
            });
        }
        Ok(range)
    }

    async fn retrieve_numbers(
        &self,
        ranges: Vec<Range<u64>>,
        purpose: &str,
    ) -> Result<Numbers, AnnDataError> {
        self.check_read(&ranges)?;
        #[allow(clippy::infallible_destructuring_match)] // one arm without the `h5ad` feature
        let array = match &self.backing {
            Backing::Zarr(array) => array,
            #[cfg(feature = "h5ad")]
            Backing::Hdf5(array) => {
                return match array.read_numbers(ranges).await {
                    Err(AnnDataError::Dtype { key, dtype, .. }) => Err(AnnDataError::Dtype {
                        key,
                        dtype,
                        purpose: purpose.to_string(),
                    }),
                    other => other,
                };
            }
        };
        let subset = &ArraySubset::new_with_ranges(&ranges);
        macro_rules! get {
            ($t:ty, $variant:ident) => {
                Numbers::$variant(
                    array
                        .async_retrieve_array_subset::<Vec<$t>>(subset)
                        .await
                        .map_err(|e| self.read_error(e))?,
                )
            };
        }
        Ok(match self.kind {
            ElementKind::Bool => get!(bool, Bool),
            ElementKind::Int(1) => get!(i8, I8),
            ElementKind::Int(2) => get!(i16, I16),
            ElementKind::Int(4) => get!(i32, I32),
            ElementKind::Int(8) => get!(i64, I64),
            ElementKind::UInt(1) => get!(u8, U8),
            ElementKind::UInt(2) => get!(u16, U16),
            ElementKind::UInt(4) => get!(u32, U32),
            ElementKind::UInt(8) => get!(u64, U64),
            ElementKind::Float(2) => {
                let raw: Vec<half::f16> = array
                    .async_retrieve_array_subset::<Vec<half::f16>>(subset)
                    .await
                    .map_err(|e| self.read_error(e))?;
                Numbers::F16(raw.into_iter().map(f32::from).collect())
            }
            ElementKind::Float(4) => get!(f32, F32),
            ElementKind::Float(8) => get!(f64, F64),
            _ => {
                return Err(AnnDataError::Dtype {
                    key: self.key.clone(),
                    dtype: array.data_type().to_string(),
                    purpose: purpose.to_string(),
                });
            }
        })
    }

    /// Read a 1-D numeric or bool array (optionally a range of it).
    pub async fn read_numbers(&self, range: Option<Range<u64>>) -> Result<Numbers, AnnDataError> {
        let range = self.subset_1d(range)?;
        self.retrieve_numbers(vec![range], "numbers").await
    }

    /// Read rows `rows` and columns `cols` of a 2-D numeric array, row-major.
    pub async fn read_numbers_2d(
        &self,
        rows: Range<u64>,
        cols: Range<u64>,
    ) -> Result<Numbers, AnnDataError> {
        let shape = self.shape();
        let [n_rows, n_cols] = shape else {
            return Err(AnnDataError::Shape {
                key: self.key.clone(),
                expected: "a 2-D array".into(),
                found: shape.to_vec(),
            });
        };
        if rows.end > *n_rows
            || cols.end > *n_cols
            || rows.start > rows.end
            || cols.start > cols.end
        {
            return Err(AnnDataError::Shape {
                key: self.key.clone(),
                expected: format!("at least {} x {}", rows.end, cols.end),
                found: shape.to_vec(),
            });
        }
        self.retrieve_numbers(vec![rows, cols], "a 2-D numeric matrix")
            .await
    }

    /// Read a 1-D string array.
    pub async fn read_strings(
        &self,
        range: Option<Range<u64>>,
    ) -> Result<Vec<String>, AnnDataError> {
        let range = self.subset_1d(range)?;
        self.check_read(std::slice::from_ref(&range))?;
        if self.kind != ElementKind::String {
            return Err(AnnDataError::Dtype {
                key: self.key.clone(),
                dtype: match &self.backing {
                    Backing::Zarr(array) => array.data_type().to_string(),
                    #[cfg(feature = "h5ad")]
                    Backing::Hdf5(array) => array.descriptor().to_string(),
                },
                purpose: "a string array".into(),
            });
        }
        match &self.backing {
            Backing::Zarr(array) => array
                .async_retrieve_array_subset::<Vec<String>>(&ArraySubset::new_with_ranges(&[range]))
                .await
                .map_err(|e| self.read_error(e)),
            #[cfg(feature = "h5ad")]
            Backing::Hdf5(array) => array.read_strings(range).await,
        }
    }
}

impl Numbers {
    /// Each value as Python's `str()` prints it (`True`, `3`, `2.5`, `1e-05`).
    pub fn python_str_labels(&self) -> Vec<String> {
        use crate::model::categories::{py_bool_str, py_float_repr, py_int_str};
        match self {
            Numbers::Bool(v) => v.iter().map(|b| py_bool_str(*b).to_string()).collect(),
            Numbers::F16(v) | Numbers::F32(v) => {
                v.iter().map(|x| py_float_repr(f64::from(*x))).collect()
            }
            Numbers::F64(v) => v.iter().map(|x| py_float_repr(*x)).collect(),
            Numbers::U64(v) => v.iter().map(|x| x.to_string()).collect(),
            other => other.to_i64().into_iter().map(py_int_str).collect(),
        }
    }
}
