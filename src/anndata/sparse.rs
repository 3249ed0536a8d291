//! The structure of compressed sparse matrices (CSR / CSC) read from a store, checked before
//! any use: a decreasing or out-of-range `indptr`, an index outside the matrix, or arrays whose
//! lengths disagree are an error naming the array — never garbage served as data.

use super::AnnDataError;
use super::array::{IndexType, IndexValuesError, Numbers};
use crate::memory::TooLarge;

fn structure(key: String, reason: String) -> AnnDataError {
    AnnDataError::Structure { key, reason }
}

fn allocation(key: &str, count: usize) -> AnnDataError {
    AnnDataError::TooLarge(TooLarge::Allocation {
        what: format!("the offsets of `{key}`"),
        needed: crate::memory::bytes_of::<u64>(count as u64),
    })
}

/// The `indptr` of a matrix with `major` compressed rows (CSR) or columns (CSC) and `nnz`
/// stored values, as offsets: exactly `major + 1` integers, starting at 0, never decreasing,
/// ending at `nnz`. `key` is the matrix group (messages name `<key>/indptr`).
pub fn checked_indptr(
    key: &str,
    indptr: &Numbers,
    major: u64,
    nnz: u64,
) -> Result<Vec<u64>, AnnDataError> {
    let array = format!("{key}/indptr");
    let expected = major.checked_add(1);
    if expected != Some(indptr.len() as u64) {
        return Err(structure(
            array,
            format!(
                "has {} entries, expected {} (one more than the {major} compressed rows or columns)",
                indptr.len(),
                expected.map_or_else(|| "2^64".into(), |n| n.to_string()),
            ),
        ));
    }
    let bound = nnz.saturating_add(1);
    let offsets: Vec<u64> = match indptr.to_indices_below::<u64>(bound) {
        Ok(offsets) => offsets,
        Err(IndexValuesError::NotIntegers) => {
            return Err(structure(array, "holds non-integer values".into()));
        }
        Err(IndexValuesError::OutOfRange { position, value }) => {
            return Err(structure(
                array,
                format!("indptr[{position}] = {value} is outside 0..={nnz} (the stored values)"),
            ));
        }
        Err(IndexValuesError::Allocation) => return Err(allocation(key, indptr.len())),
    };
    if let Some(&first) = offsets.first()
        && first != 0
    {
        return Err(structure(array, format!("starts at {first}, not 0")));
    }
    if let Some(i) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(structure(
            array,
            format!(
                "decreases at position {}: {} then {}",
                i + 1,
                offsets[i],
                offsets[i + 1]
            ),
        ));
    }
    match offsets.last() {
        Some(&last) if last == nnz => Ok(offsets),
        last => Err(structure(
            array,
            format!(
                "ends at {}, but the matrix stores {nnz} values",
                last.copied().unwrap_or_default()
            ),
        )),
    }
}

/// Minor-axis positions (`indices`, from stored value number `first` on) as `O`, each in
/// `0..minor`. `key` is the matrix group.
pub fn checked_indices<O: IndexType>(
    key: &str,
    indices: &Numbers,
    minor: u64,
    first: u64,
) -> Result<Vec<O>, AnnDataError> {
    let array = format!("{key}/indices");
    if u128::from(minor) > O::LIMIT {
        return Err(AnnDataError::TooLarge(TooLarge::Extent {
            what: format!("the {minor} rows or columns of `{key}`"),
            most: O::LIMIT,
        }));
    }
    indices.to_indices_below::<O>(minor).map_err(|e| match e {
        IndexValuesError::NotIntegers => structure(array, "holds non-integer values".into()),
        IndexValuesError::OutOfRange { position, value } => structure(
            array,
            format!(
                "indices[{}] = {value} is outside 0..{minor}",
                first + position as u64
            ),
        ),
        IndexValuesError::Allocation => allocation(key, indices.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(e: AnnDataError) -> String {
        e.to_string()
    }

    #[test]
    fn valid_offsets_pass() {
        let ptr = checked_indptr("X", &Numbers::I32(vec![0, 2, 2, 5]), 3, 5).unwrap();
        assert_eq!(ptr, vec![0, 2, 2, 5]);
        assert_eq!(
            checked_indptr("X", &Numbers::U64(vec![0]), 0, 0).unwrap(),
            vec![0]
        );
    }

    #[test]
    fn every_kind_of_broken_offsets_is_refused() {
        let bad = |v: Vec<i64>, major: u64, nnz: u64| {
            reason(checked_indptr("X", &Numbers::I64(v), major, nnz).unwrap_err())
        };
        assert!(bad(vec![0, 3, 2, 5], 3, 5).contains("decreases at position 2"));
        assert!(bad(vec![0, 2, 9, 9], 3, 5).contains("outside 0..=5"));
        assert!(bad(vec![0, -1, 2, 5], 3, 5).contains("-1"));
        assert!(bad(vec![1, 2, 3, 5], 3, 5).contains("starts at 1"));
        assert!(bad(vec![0, 2, 3, 4], 3, 5).contains("ends at 4"));
        assert!(bad(vec![0, 5], 3, 5).contains("has 2 entries, expected 4"));
        assert!(bad(vec![0], u64::MAX, 5).contains("expected 2^64"));
        let float = checked_indptr("X", &Numbers::F32(vec![0.0, 1.0]), 1, 1).unwrap_err();
        assert!(reason(float).contains("non-integer"));
        assert!(bad(vec![0, 3, 2, 5], 3, 5).contains("`X/indptr`"));
    }

    #[test]
    fn indices_are_bounded_by_the_minor_axis() {
        let ok: Vec<u32> = checked_indices("X", &Numbers::I64(vec![0, 4, 2]), 5, 0).unwrap();
        assert_eq!(ok, vec![0, 4, 2]);
        let err = checked_indices::<u32>("X", &Numbers::I64(vec![0, 5]), 5, 100).unwrap_err();
        assert!(reason(err).contains("indices[101] = 5 is outside 0..5"));
        let err = checked_indices::<u32>("X", &Numbers::I32(vec![-3]), 5, 0).unwrap_err();
        assert!(reason(err).contains("-3"));
        let err = checked_indices::<u32>("X", &Numbers::U8(vec![0]), 1 << 40, 0).unwrap_err();
        assert!(matches!(err, AnnDataError::TooLarge(_)));
    }
}
