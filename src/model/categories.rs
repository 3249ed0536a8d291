//! Category labels and codes (protocol §5.3 / §6.2, adapter `get_obs_categorical_codes`).
//!
//! The reference does `cat = col.astype("category")`, `[str(c) for c in cat.cat.categories]`
//! and `cat.cat.codes`. Iterating a pandas `Index` yields Python scalars, so a float32
//! category is widened to a Python float first: `str()` of a float32 category `0.1` is
//! `'0.10000000149011612'` (not NumPy's `'0.1'`). Verified with pandas 2.3.3 / NumPy 2.4.6.

use std::collections::HashMap;

use crate::model::error::{ModelError, ModelResult};

/// `(categories, codes)`: the category labels (Python `str()` of each category) and one code
/// per cell (index into the categories, `-1` for missing).
pub type Categorized = (Vec<String>, Vec<i32>);

/// Python's `repr(float)` / `str(float)`: shortest round-trip digits, fixed notation when the
/// decimal exponent is in `[-4, 16)`, otherwise `d.ddde±XX`; `inf`, `-inf`, `nan`, `-0.0`.
pub fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    // Rust's `{:e}` prints the shortest round-trip digits, e.g. "1.2345e-5", but breaks exact
    // ties between two shortest candidates upwards, whereas Python picks the candidate nearest
    // to the value with ties to even. Re-round to the same digit count with `{:.Ne}` (exact,
    // ties to even) and keep that when it still round-trips.
    let shortest = format!("{:e}", x.abs());
    let n_sig = shortest
        .split('e')
        .next()
        .map_or(1, |m| m.chars().filter(char::is_ascii_digit).count());
    let exact = format!("{:.*e}", n_sig.saturating_sub(1), x.abs());
    let sci = if exact.parse::<f64>() == Ok(x.abs()) {
        exact
    } else {
        shortest
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let ndigits = digits.len() as i32;
    let decpt = exp + 1; // value = 0.DIGITS × 10^decpt
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-decpt) as usize))
        } else if decpt >= ndigits {
            format!("{sign}{digits}{}.0", "0".repeat((decpt - ndigits) as usize))
        } else {
            let (int_part, frac) = digits.split_at(decpt as usize);
            format!("{sign}{int_part}.{frac}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let e = decpt - 1;
        let esign = if e < 0 { '-' } else { '+' };
        if rest.is_empty() {
            format!("{sign}{first}e{esign}{:02}", e.abs())
        } else {
            format!("{sign}{first}.{rest}e{esign}{:02}", e.abs())
        }
    }
}

/// Label of a float32 category: Python `str(float(np.float32(x)))` (see the module docs).
pub fn py_float32_category_label(x: f32) -> String {
    py_float_repr(f64::from(x))
}

/// Python `str(bool)`: `"True"` / `"False"`.
pub fn py_bool_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Python `str(int)`.
pub fn py_int_str(i: i64) -> String {
    i.to_string()
}

fn codes_from_lookup<K, F>(values: &[Option<K>], mut code_of: F) -> Vec<i32>
where
    K: Copy,
    F: FnMut(K) -> i32,
{
    values
        .iter()
        .map(|v| match v {
            Some(k) => code_of(*k),
            None => -1,
        })
        .collect()
}

/// Categories of a string column that is not already categorical: distinct non-missing values
/// sorted by Unicode code point (pandas' order); `None` is missing.
pub fn categorize_strings(values: &[Option<&str>]) -> Categorized {
    let mut uniq: Vec<&str> = values.iter().flatten().copied().collect();
    uniq.sort_unstable();
    uniq.dedup();
    let index: HashMap<&str, i32> = uniq
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, i as i32))
        .collect();
    let codes = codes_from_lookup(values, |s| index.get(s).copied().unwrap_or(-1));
    (uniq.into_iter().map(str::to_string).collect(), codes)
}

/// Categories of a boolean column (`bool` or nullable `boolean`): `False` < `True`, labels
/// `"False"`/`"True"`; `None` is missing.
pub fn categorize_bools(values: &[Option<bool>]) -> Categorized {
    let has_false = values.contains(&Some(false));
    let has_true = values.contains(&Some(true));
    let mut categories = Vec::new();
    let (mut false_code, mut true_code) = (-1, -1);
    if has_false {
        false_code = categories.len() as i32;
        categories.push("False".to_string());
    }
    if has_true {
        true_code = categories.len() as i32;
        categories.push("True".to_string());
    }
    let codes = codes_from_lookup(values, |b| if b { true_code } else { false_code });
    (categories, codes)
}

/// Categories of an integer column (e.g. an object or nullable `Int64` column made
/// categorical): ascending values, labels `str(int)`; `None` is missing.
pub fn categorize_ints(values: &[Option<i64>]) -> Categorized {
    let mut uniq: Vec<i64> = values.iter().flatten().copied().collect();
    uniq.sort_unstable();
    uniq.dedup();
    let index: HashMap<i64, i32> = uniq
        .iter()
        .enumerate()
        .map(|(i, v)| (*v, i as i32))
        .collect();
    let codes = codes_from_lookup(values, |v| index.get(&v).copied().unwrap_or(-1));
    (uniq.into_iter().map(py_int_str).collect(), codes)
}

fn float_key(x: f64) -> u64 {
    // Equal floats share a key (-0.0 == 0.0); keys order like the values.
    let x = if x == 0.0 { 0.0 } else { x };
    let bits = x.to_bits();
    if bits & (1 << 63) != 0 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Categories of float values (NaN is missing): ascending values, labels Python
/// `str(float)`; `-0.0` and `0.0` are one category labelled like its first occurrence (pandas
/// keeps the first value seen). For float32 data pass the values widened to `f64`.
pub fn categorize_floats(values: &[f64]) -> Categorized {
    let mut first: HashMap<u64, f64> = HashMap::new();
    for &v in values {
        if !v.is_nan() {
            first.entry(float_key(v)).or_insert(v);
        }
    }
    let mut keys: Vec<u64> = first.keys().copied().collect();
    keys.sort_unstable();
    let index: HashMap<u64, i32> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, i as i32))
        .collect();
    let codes = values
        .iter()
        .map(|&v| {
            if v.is_nan() {
                -1
            } else {
                index.get(&float_key(v)).copied().unwrap_or(-1)
            }
        })
        .collect();
    let categories = keys
        .iter()
        .map(|k| py_float_repr(first.get(k).copied().unwrap_or(f64::NAN)))
        .collect();
    (categories, codes)
}

/// Cells grouped by category code (a stable counting sort: ascending cell order within each
/// category). Codes that are negative or `>= n_categories` belong to no group, like the
/// reference's `codes == code` masks for `code in range(len(categories))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGroups {
    offsets: Vec<usize>,
    cells: Vec<usize>,
}

impl CodeGroups {
    /// Groups the cells of `codes` into `n_categories` groups.
    pub fn new(codes: &[i32], n_categories: usize) -> Self {
        let valid =
            |c: i32| -> Option<usize> { usize::try_from(c).ok().filter(|&c| c < n_categories) };
        let mut offsets = vec![0usize; n_categories + 1];
        for &c in codes {
            if let Some(c) = valid(c) {
                offsets[c + 1] += 1;
            }
        }
        for i in 0..n_categories {
            offsets[i + 1] += offsets[i];
        }
        let mut cursor = offsets.clone();
        let mut cells = vec![0usize; offsets[n_categories]];
        for (cell, &c) in codes.iter().enumerate() {
            if let Some(c) = valid(c) {
                cells[cursor[c]] = cell;
                cursor[c] += 1;
            }
        }
        Self { offsets, cells }
    }

    /// Number of categories.
    pub fn n_categories(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The cells (ascending) whose code is `code`; empty for an unknown code.
    pub fn cells(&self, code: usize) -> &[usize] {
        match (self.offsets.get(code), self.offsets.get(code + 1)) {
            (Some(&a), Some(&b)) => &self.cells[a..b],
            _ => &[],
        }
    }
}

/// Most categories a field may have: its codes travel as `uint16` with `65535` as the
/// missing-value sentinel. (The reference serves a field with more, its codes silently
/// wrapped around; this server leaves such a field out of the manifests with a warning.)
pub const MAX_CATEGORIES: usize = 65535;

/// Storage type of categorical codes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodesDtype {
    /// `uint8`, missing sentinel 255 (at most 254 categories).
    U8,
    /// `uint16`, missing sentinel 65535 (at most 65535 categories).
    U16,
}

impl CodesDtype {
    /// The dtype for a field with `n_categories` categories; error above 65535.
    pub fn for_n_categories(n_categories: usize) -> ModelResult<Self> {
        if n_categories <= 254 {
            Ok(Self::U8)
        } else if n_categories <= MAX_CATEGORIES {
            Ok(Self::U16)
        } else {
            Err(ModelError::TooManyCategories { n_categories })
        }
    }

    /// The manifest's `codesDtype` string: `"uint8"` / `"uint16"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::U8 => "uint8",
            Self::U16 => "uint16",
        }
    }

    /// The file extension in `obs/<key>.codes.<ext>`: `"u8"` / `"u16"`.
    pub fn ext(self) -> &'static str {
        match self {
            Self::U8 => "u8",
            Self::U16 => "u16",
        }
    }

    /// The manifest's `missing` value: 255 / 65535.
    pub fn missing_value(self) -> u16 {
        match self {
            Self::U8 => 255,
            Self::U16 => 65535,
        }
    }

    /// Bytes per code.
    pub fn byte_width(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::U16 => 2,
        }
    }
}

/// Encoded codes of a categorical field (`obs/<key>.codes.u8|u16`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodesBuffer {
    /// Storage type.
    pub dtype: CodesDtype,
    /// Sentinel written for missing values (255 or 65535).
    pub missing_value: u16,
    /// Little-endian bytes, one code per cell.
    pub bytes: Vec<u8>,
}

/// Encodes pandas codes (`-1` = missing; like the reference, every negative code is treated as
/// missing) as little-endian `u8` (≤ 254 categories, sentinel 255) or `u16` (≤ 65535,
/// sentinel 65535). Zero categories give all-255 `u8`. Errors on more than 65535 categories
/// and on codes `>= n_categories`.
pub fn encode_codes(codes: &[i32], n_categories: usize) -> ModelResult<CodesBuffer> {
    let dtype = CodesDtype::for_n_categories(n_categories)?;
    let missing = dtype.missing_value();
    let mut bytes = Vec::with_capacity(codes.len() * dtype.byte_width());
    for (index, &code) in codes.iter().enumerate() {
        let value: u16 = if code < 0 {
            missing
        } else if (code as usize) < n_categories {
            code as u16
        } else {
            return Err(ModelError::InvalidCode {
                index,
                code: i64::from(code),
                n_categories,
            });
        };
        match dtype {
            CodesDtype::U8 => bytes.push(value as u8),
            CodesDtype::U16 => bytes.extend_from_slice(&value.to_le_bytes()),
        }
    }
    Ok(CodesBuffer {
        dtype,
        missing_value: missing,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        // python (3.11): (struct bits of v, repr(v)) for special values, float(np.float32(..))
        // values, random magnitudes 1e-330..1e310 and random bit patterns (gen_repr.py)
        let cases: [(u64, &str); 132] = [
            (0x0000000000000000, "0.0"),
            (0x8000000000000000, "-0.0"),
            (0x3ff0000000000000, "1.0"),
            (0xbff0000000000000, "-1.0"),
            (0x3fb999999999999a, "0.1"),
            (0x4004000000000000, "2.5"),
            (0x3ee4f8b588e368f1, "1e-05"),
            (0x3f1a36e2eb1c432d, "0.0001"),
            (0x3f202c9dedbc309d, "0.0001234"),
            (0x4341c37937e08000, "1e+16"),
            (0x430c6bf526340000, "1000000000000000.0"),
            (0x4341c37937e07fff, "9999999999999998.0"),
            (0x4415af1d78b58c40, "1e+20"),
            (0x4480f0cf064dd592, "1e+22"),
            (0x7e41eb2d66005835, "1.5e+300"),
            (0x0000000000000001, "5e-324"),
            (0x0010000000000000, "2.2250738585072014e-308"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0x419d6f3454000000, "123456789.0"),
            (0x3fd5555555555555, "0.3333333333333333"),
            (0x4059000000000000, "100.0"),
            (0x3e7ad7f29abcaf48, "1e-07"),
            (0x43e56a95319d63e1, "1.2345678901234567e+19"),
            (0x3f0a36e2eb1c432d, "5e-05"),
            (0x47efffffe0000000, "3.4028234663852886e+38"),
            (0x3fb99999a0000000, "0.10000000149011612"),
            (0x4170000000000000, "16777216.0"),
            (0x3ee4f8b580000000, "9.999999747378752e-06"),
            (0x4011666666666666, "4.35"),
            (0x4340000000000000, "9007199254740992.0"),
            (0x4340000000000001, "9007199254740994.0"),
            (0x3ecbf647612f3696, "3.3333333333333333e-06"),
            (0x78c25e9e1d2031e3, "4.968734353935042e+273"),
            (0x4e56f3bc9d519482, "2.4751492202733086e+69"),
            (0x55c074a1cc8b805f, "1.179402554250586e+105"),
            (0x727208b7d6866d59, "1.9240214398531066e+243"),
            (0x483456456253569a, "6.920321208818391e+39"),
            (0x62416b00e5ff3e00, "2.006067239869952e+165"),
            (0x69fe2c50a8bc288a, "3.695363106022067e+202"),
            (0x18d0a3507cc135b7, "3.7342420520759534e-189"),
            (0x02ab247692df0cf9, "8.300477298017456e-296"),
            (0x231d6e329fa0001f, "1.5446108106143987e-139"),
            (0x2115e62007f6e39c, "2.6759930456378545e-149"),
            (0x6f7739cb165dfc9d, "8.803321539808286e+228"),
            (0x749bd041812e25e7, "5.0979080986842314e+253"),
            (0x0000000000000000, "0.0"),
            (0x3d9c229332536dae, "6.3971716694252615e-12"),
            (0x686452a026beb811, "7.417709473618571e+194"),
            (0x0ca478aaed62e0c0, "9.149560506304566e-248"),
            (0x6540b1517ae16b05, "5.411438213764888e+179"),
            (0x0b230f7fbfc319a0, "5.0777223630035e-255"),
            (0x397c46cde8c9b715, "8.713393766928807e-32"),
            (0x67b44548c6849787, "3.612640590141576e+191"),
            (0x2371cf08a723e40f, "5.981840672072131e-138"),
            (0x286d2ed3d3e9fc14, "5.925164234550362e-114"),
            (0x2049fc88e24e1fa8, "3.876318011107287e-153"),
            (0x5ad2a423e9ae352f, "3.230363462582067e+129"),
            (0x1d16ac865f26cde2, "1.5019972907045186e-168"),
            (0x7ed30be537713211, "8.163381038190757e+302"),
            (0x364bba6224b83706, "3.794461715503125e-47"),
            (0x3af2ee8657d86a79, "9.787478844112216e-25"),
            (0x3e395706fb01d03b, "5.899916930106103e-09"),
            (0x489bc866eeea7673, "6.050562538298513e+41"),
            (0x44e0e33ba573076d, "6.379965807883321e+23"),
            (0x3f11bb94ab793fb6, "6.764502438127884e-05"),
            (0x7f812da7c7778e71, "1.507880191683687e+306"),
            (0x6679e8004639becf, "4.403134671881875e+185"),
            (0x648e44ca9afa21a2, "2.3956396182952334e+176"),
            (0x585989b5e53fe580, "4.0249829810398163e+117"),
            (0x4dd6f4dda28a46bf, "9.670409393174561e+66"),
            (0x28adcadf955db0fd, "9.678280510488214e-113"),
            (0x7e800d6c6c96dacf, "2.1500403735588003e+301"),
            (0x394170a5329f3802, "6.71765162611285e-33"),
            (0x17c18b5788ab3844, "3.004200814790703e-194"),
            (0x6b85450f6127414c, "8.740770261495045e+209"),
            (0x10901066c55d2a44, "6.622147383384538e-229"),
            (0x6d0316fc964d921e, "1.3161581580830573e+217"),
            (0x4cca4b67c357ee83, "8.45074320874553e+61"),
            (0x0a922943a7f945a7, "9.449481711449795e-258"),
            (0x0138cb85012f35aa, "9.039167881959268e-303"),
            (0x3654d0ee5574c323, "5.697191478592772e-47"),
            (0x00010bc4a73e1cd0, "1.45459953760927e-309"),
            (0x0df4889957436430, "1.9246349496833237e-241"),
            (0x3fb7c11f68f99b08, "0.09279056847445244"),
            (0x7c16aba236f56cff, "5.5232648766726384e+289"),
            (0x3922bfe8a1695872, "1.8055249844891166e-33"),
            (0x66c0412522b6da60, "8.8405689419647e+186"),
            (0x750b58a852c63feb, "6.415717052224808e+255"),
            (0x68c8634e6218d43f, "5.696942744738079e+196"),
            (0x4ecb42a551e77d79, "3.762878361299201e+71"),
            (0x35e3383646596f5a, "4.109552821571298e-49"),
            (0x3f988610e67c3e40, "0.023948921268184487"),
            (0x04df0fa8db4fa466, "3.2637879444910872e-285"),
            (0x7027f01a7c15ebf2, "1.8582014622597225e+232"),
            (0x3bde957048a4e514, "2.5905439296373406e-20"),
            (0x4618e9036176cf93, "4.933974986673496e+29"),
            (0x293ca5b7bd145c54, "4.764812556076714e-110"),
            (0x602b6a3bb92eab84, "1.8378735159950594e+155"),
            (0x0339a6ac070d747b, "4.0163318536716846e-293"),
            (0x2fa3c45adc35fab0, "3.334203953599244e-79"),
            (0x03e284b8e6e0b338, "5.938253489353356e-290"),
            (0x0fbaedabf41f49cd, "6.775385276529743e-233"),
            (0x7bcb836cb53911f9, "2.0947383067259197e+288"),
            (0x543180ec0de37ba4, "3.738746674468686e+97"),
            (0x36cfebc8dd2b51e4, "1.1182723872548425e-44"),
            (0x4309ea758a1d7712, "911833120878306.2"),
            (0x6fb8364f3777fd6c, "1.4683513713818996e+230"),
            (0x2c0f185ad754eda0, "1.819717044325469e-96"),
            (0x4b8ea7a8076ddb92, "9.395701861794009e+55"),
            (0x5782f83423c9c303, "3.64960035589195e+113"),
            (0x2d7e32da6e91ad06, "1.4824797331652855e-89"),
            (0x4271d1b773a1cda4, "1224526477852.8525"),
            (0xbfca5bece0000000, "-0.20593033730983734"),
            (0x3fe67a93a0000000, "0.7024629712104797"),
            (0x3fe0a31560000000, "0.5199076533317566"),
            (0xbff089efa0000000, "-1.0336757898330688"),
            (0xbfb4453a20000000, "-0.07918132096529007"),
            (0x3fa2111e20000000, "0.03528684750199318"),
            (0xbff0df2b40000000, "-1.0544846057891846"),
            (0x3fd0a13420000000, "0.25983908772468567"),
            (0xbfeb746120000000, "-0.8579564690589905"),
            (0x3fef1b2ba0000000, "0.9720667004585266"),
            (0x3fc8abe5e0000000, "0.19274590909481049"),
            (0x3fb6dcca40000000, "0.08930648863315582"),
            (0xbfe2e9b440000000, "-0.5910283327102661"),
            (0xbfbe5d36a0000000, "-0.11860982328653336"),
            (0xbffff6c4e0000000, "-1.9977463483810425"),
            (0xbff21a3ec0000000, "-1.1314074993133545"),
            (0x3fd738c460000000, "0.36283978819847107"),
            (0xc001074e20000000, "-2.1285669803619385"),
            (0x3feb176ac0000000, "0.8466085195541382"),
            (0xbffbf002e0000000, "-1.7460964918136597"),
        ];
        for (bits, expected) in cases {
            let v = f64::from_bits(bits);
            assert_eq!(py_float_repr(v), expected, "bits {bits:#018x}");
        }
        assert_eq!(py_float_repr(f64::NAN), "nan");
        assert_eq!(py_float_repr(f64::INFINITY), "inf");
        assert_eq!(py_float_repr(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn float32_categories_widen_to_python_float() {
        // python: pd.Series(np.array([...], np.float32)).astype("category") then str(c)
        assert_eq!(py_float32_category_label(0.1), "0.10000000149011612");
        assert_eq!(py_float32_category_label(1e-5), "9.999999747378752e-06");
        assert_eq!(py_float32_category_label(1e20), "1.0000000200408773e+20");
        assert_eq!(py_float32_category_label(123456789.0), "123456792.0");
        assert_eq!(py_float32_category_label(2.5), "2.5");
        assert_eq!(
            py_float32_category_label(f32::MAX),
            "3.4028234663852886e+38"
        );
    }

    #[test]
    fn strings_sorted_by_code_point() {
        // python: pd.Series(["b","a",None,"B","é","Z",np.nan,"a"]).astype("category")
        //   -> ['B', 'Z', 'a', 'b', 'é'], codes [3, 2, -1, 0, 4, 1, -1, 2]
        let v = [
            Some("b"),
            Some("a"),
            None,
            Some("B"),
            Some("é"),
            Some("Z"),
            None,
            Some("a"),
        ];
        let (cats, codes) = categorize_strings(&v);
        assert_eq!(cats, vec!["B", "Z", "a", "b", "é"]);
        assert_eq!(codes, vec![3, 2, -1, 0, 4, 1, -1, 2]);
        assert_eq!(categorize_strings(&[]), (vec![], vec![]));
        assert_eq!(categorize_strings(&[None, None]), (vec![], vec![-1, -1]));
    }

    #[test]
    fn bools() {
        // python: pd.Series([True, False, None], dtype="boolean").astype("category")
        //   -> ['False', 'True'], codes [1, 0, -1]
        let (cats, codes) = categorize_bools(&[Some(true), Some(false), None]);
        assert_eq!(cats, vec!["False", "True"]);
        assert_eq!(codes, vec![1, 0, -1]);
        let (cats, codes) = categorize_bools(&[Some(true), Some(true)]);
        assert_eq!(cats, vec!["True"]);
        assert_eq!(codes, vec![0, 0]);
    }

    #[test]
    fn ints() {
        // python: pd.Series(np.array([3, -1, 2, 3], np.int8)).astype("category")
        //   -> ['-1', '2', '3'], codes [2, 0, 1, 2]
        let (cats, codes) = categorize_ints(&[Some(3), Some(-1), Some(2), Some(3), None]);
        assert_eq!(cats, vec!["-1", "2", "3"]);
        assert_eq!(codes, vec![2, 0, 1, 2, -1]);
    }

    #[test]
    fn floats() {
        // python: pd.Series(np.array([0.1, 2.5, 1e-5, 1e20, 1e16, 1e15, 123456789.0, 0.0001,
        //   -0.0, 0.0, inf, -inf, nan, 1.0, 3.4028235e38, 1/3, 16777217.0])).astype("category")
        let v = [
            0.1,
            2.5,
            1e-5,
            1e20,
            1e16,
            1e15,
            123456789.0,
            0.0001,
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1.0,
            3.4028235e38,
            1.0 / 3.0,
            16777217.0,
        ];
        let (cats, codes) = categorize_floats(&v);
        assert_eq!(
            cats,
            vec![
                "-inf",
                "-0.0",
                "1e-05",
                "0.0001",
                "0.1",
                "0.3333333333333333",
                "1.0",
                "2.5",
                "16777217.0",
                "123456789.0",
                "1000000000000000.0",
                "1e+16",
                "1e+20",
                "3.4028235e+38",
                "inf"
            ]
        );
        assert_eq!(
            codes,
            vec![4, 7, 2, 12, 11, 10, 9, 3, 1, 1, 14, 0, -1, 6, 13, 5, 8]
        );
        // python: [0.0, -0.0, 1.0] -> ['0.0', '1.0']; [1.0, -0.0, 0.0] -> ['-0.0', '1.0']
        assert_eq!(categorize_floats(&[0.0, -0.0, 1.0]).0, vec!["0.0", "1.0"]);
        assert_eq!(categorize_floats(&[1.0, -0.0, 0.0]).0, vec!["-0.0", "1.0"]);
        assert_eq!(categorize_floats(&[f64::NAN]), (vec![], vec![-1]));
    }

    #[test]
    fn code_groups() {
        let g = CodeGroups::new(&[1, 0, -1, 1, 5, 0, 2], 3);
        assert_eq!(g.n_categories(), 3);
        assert_eq!(g.cells(0), &[1, 5]);
        assert_eq!(g.cells(1), &[0, 3]);
        assert_eq!(g.cells(2), &[6]);
        assert!(g.cells(3).is_empty());
        let g = CodeGroups::new(&[], 0);
        assert_eq!(g.n_categories(), 0);
        assert!(g.cells(0).is_empty());
    }

    #[test]
    fn codes_u8() {
        let b = encode_codes(&[0, 1, -1, 2], 3).unwrap();
        assert_eq!(b.dtype, CodesDtype::U8);
        assert_eq!(b.dtype.as_str(), "uint8");
        assert_eq!(b.dtype.ext(), "u8");
        assert_eq!(b.missing_value, 255);
        assert_eq!(b.bytes, vec![0, 1, 255, 2]);
        let b = encode_codes(&[253, -1], 254).unwrap();
        assert_eq!(b.bytes, vec![253, 255]);
    }

    #[test]
    fn codes_u16() {
        let b = encode_codes(&[254, -1, 0, 300], 301).unwrap();
        assert_eq!(b.dtype, CodesDtype::U16);
        assert_eq!(b.dtype.as_str(), "uint16");
        assert_eq!(b.missing_value, 65535);
        assert_eq!(b.bytes, vec![254, 0, 255, 255, 0, 0, 0x2c, 0x01]);
        let b = encode_codes(&[65534], 65535).unwrap();
        assert_eq!(b.bytes, vec![0xfe, 0xff]);
        assert_eq!(CodesDtype::for_n_categories(255), Ok(CodesDtype::U16));
    }

    #[test]
    fn codes_errors_and_zero_categories() {
        let b = encode_codes(&[-1, -1, -1], 0).unwrap();
        assert_eq!(b.dtype, CodesDtype::U8);
        assert_eq!(b.bytes, vec![255, 255, 255]);
        assert_eq!(
            encode_codes(&[0], 65536),
            Err(ModelError::TooManyCategories {
                n_categories: 65536
            })
        );
        assert_eq!(
            encode_codes(&[0, 3], 3),
            Err(ModelError::InvalidCode {
                index: 1,
                code: 3,
                n_categories: 3
            })
        );
        assert_eq!(
            encode_codes(&[0], 0).map(|_| ()),
            Err(ModelError::InvalidCode {
                index: 0,
                code: 0,
                n_categories: 0
            })
        );
        assert_eq!(encode_codes(&[], 5).unwrap().bytes, Vec::<u8>::new());
        assert_eq!(encode_codes(&[-7], 5).unwrap().bytes, vec![255]);
    }
}
