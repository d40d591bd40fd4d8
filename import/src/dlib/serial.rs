//! dlib's serialisation primitives (dlib/serialize.h, dlib/float_details.h, dlib/cuda/tensor.h), read from
//! a byte slice with the offset of every value kept for error messages.
//!
//! The bytes are untrusted: every read checks what is left before taking anything, every length is
//! bounded by what the caller expects and by the bytes that remain before anything is allocated, and
//! nothing here panics on any input.

use super::DlibError;

/// The float a dlib `float_details` encodes: `mantissa * 2^exponent`, or infinity, minus infinity or
/// NaN for dlib's three reserved exponents.
const EXPONENT_INF: i64 = 32000;
const EXPONENT_NINF: i64 = 32001;

/// A tensor's shape as dlib writes it: samples, channels (k), rows, columns.
pub(crate) type Dims = [i64; 4];

/// A cursor over a dlib serialisation.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    /// Offset of the next byte to read.
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes, or an error naming `what` when fewer remain.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DlibError> {
        if n > self.remaining() {
            return Err(DlibError::Truncated {
                offset: self.bytes.len(),
                what: what.to_string(),
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn invalid(&self, at: usize, what: &str, reason: String) -> DlibError {
        DlibError::Invalid {
            offset: at,
            what: what.to_string(),
            reason,
        }
    }

    /// dlib's `unpack_int`: a control byte giving the number of little-endian bytes that follow
    /// (1..=`max_bytes`) and, for signed types, the sign in its top bit. Returns the sign and magnitude.
    fn packed(
        &mut self,
        what: &str,
        max_bytes: u8,
        signed: bool,
    ) -> Result<(bool, u64), DlibError> {
        let at = self.pos;
        let control = self.take(1, what)?[0];
        // dlib masks the three reserved bits away; an unsigned type keeps the sign bit, which then makes
        // the size too large, as dlib's own check does.
        let (negative, size) = if signed {
            (control & 0x80 != 0, control & 0x0F)
        } else {
            (false, control & 0x8F)
        };
        if size == 0 || size > max_bytes {
            return Err(self.invalid(
                at,
                what,
                format!("integer control byte {control:#04x}: size {size}, not 1 to {max_bytes}"),
            ));
        }
        let digits = self.take(usize::from(size), what)?;
        let magnitude = digits
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        Ok((negative, magnitude))
    }

    /// A signed integer of a C++ type `bytes` wide (int: 4, long and long long: 8, int16: 2).
    fn signed(&mut self, what: &str, bytes: u8) -> Result<i64, DlibError> {
        let at = self.pos;
        let (negative, magnitude) = self.packed(what, bytes, true)?;
        let limit = if bytes >= 8 {
            i64::MAX as u64
        } else {
            (1u64 << (8 * u32::from(bytes) - 1)) - 1
        };
        if magnitude > limit {
            return Err(self.invalid(
                at,
                what,
                format!("{magnitude} does not fit a {}-byte signed integer", bytes),
            ));
        }
        // magnitude <= i64::MAX here, so the conversion and the negation are exact.
        let value = magnitude as i64;
        Ok(if negative { -value } else { value })
    }

    /// A C++ `int`.
    pub(crate) fn int(&mut self, what: &str) -> Result<i64, DlibError> {
        self.signed(what, 4)
    }

    /// A C++ `long` or `long long` (eight bytes on the platforms dlib's files come from).
    pub(crate) fn long(&mut self, what: &str) -> Result<i64, DlibError> {
        self.signed(what, 8)
    }

    /// A C++ `unsigned long` or `size_t`.
    pub(crate) fn unsigned_long(&mut self, what: &str) -> Result<u64, DlibError> {
        Ok(self.packed(what, 8, false)?.1)
    }

    /// A C++ `unsigned int`.
    pub(crate) fn unsigned_int(&mut self, what: &str) -> Result<u64, DlibError> {
        Ok(self.packed(what, 4, false)?.1)
    }

    /// A `bool`: the character '1' or '0'.
    pub(crate) fn bool(&mut self, what: &str) -> Result<bool, DlibError> {
        let at = self.pos;
        match self.take(1, what)?[0] {
            b'1' => Ok(true),
            b'0' => Ok(false),
            other => Err(self.invalid(at, what, format!("byte {other:#04x} is not '0' or '1'"))),
        }
    }

    /// A `std::string` of at most `max_len` bytes: its length (unsigned long), then its bytes.
    pub(crate) fn string(&mut self, what: &str, max_len: usize) -> Result<&'a [u8], DlibError> {
        let at = self.pos;
        let len = self.unsigned_long(what)?;
        match usize::try_from(len) {
            Ok(len) if len <= max_len => self.take(len, what),
            _ => Err(self.invalid(
                at,
                what,
                format!("a string of {len} bytes, where at most {max_len} are expected"),
            )),
        }
    }

    /// A version string that must be one of `accepted`; returns its index there.
    pub(crate) fn version(&mut self, what: &str, accepted: &[&str]) -> Result<usize, DlibError> {
        let at = self.pos;
        let longest = accepted.iter().map(|s| s.len()).max().unwrap_or(0);
        // A little room beyond the longest accepted name, so a wrong name is shown in the message.
        let found = self.string(what, longest + 32)?;
        accepted
            .iter()
            .position(|s| s.as_bytes() == found)
            .ok_or_else(|| DlibError::Mismatch {
                offset: at,
                what: what.to_string(),
                expected: accepted
                    .iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(" or "),
                found: format!("\"{}\"", String::from_utf8_lossy(found).escape_debug()),
            })
    }

    /// A dlib `float_details` (int64 mantissa, int16 exponent) as mantissa and exponent. dlib also reads
    /// an older text encoding, recognised by a first byte with any of the bits 0x70 set; the files
    /// dlib has written since 2013 use this one, and the text one is refused.
    fn float_details(&mut self, what: &str) -> Result<(i64, i64), DlibError> {
        let at = self.pos;
        let first = self.take(1, what)?[0];
        self.pos = at;
        if first & 0x70 != 0 {
            return Err(self.invalid(
                at,
                what,
                "a float in dlib's old text encoding, which this reader does not read".to_string(),
            ));
        }
        let mantissa = self.signed(what, 8)?;
        let exponent = self.signed(what, 2)?;
        Ok((mantissa, exponent))
    }

    /// A serialised `double`, converted as dlib's `float_details` does: `ldexp((double)mantissa, exp)`.
    pub(crate) fn f64(&mut self, what: &str) -> Result<f64, DlibError> {
        let (mantissa, exponent) = self.float_details(what)?;
        Ok(special(exponent).unwrap_or_else(|| ldexp(mantissa as f64, exponent)))
    }

    /// A serialised `float`, converted as dlib does: `ldexp((float)mantissa, exp)`. The mantissa is
    /// rounded to float first, as in dlib; the scaling by a power of two is exact in double, so
    /// rounding the product to float rounds once, as ldexp on a float does.
    pub(crate) fn f32(&mut self, what: &str) -> Result<f32, DlibError> {
        let (mantissa, exponent) = self.float_details(what)?;
        Ok(special(exponent)
            .map(|v| v as f32)
            .unwrap_or_else(|| ldexp(f64::from(mantissa as f32), exponent) as f32))
    }

    /// The header of a `resizable_tensor`: version 2, then samples, k, rows, columns as long long.
    /// Returns the shape and the number of values, which is only known to fit a `usize` (with its four
    /// bytes each): the caller checks it against what it expects before taking the values.
    fn tensor_header(&mut self, what: &str) -> Result<(Dims, usize), DlibError> {
        let at = self.pos;
        let version = self.int(what)?;
        if version != 2 {
            return Err(DlibError::Mismatch {
                offset: at,
                what: format!("{what}: tensor version"),
                expected: "2".to_string(),
                found: version.to_string(),
            });
        }
        let dims = self.dims(what)?;
        match element_count(&dims).filter(|n| n.checked_mul(4).is_some()) {
            Some(n) => Ok((dims, n)),
            None => Err(self.invalid(
                at,
                what,
                format!("a tensor of shape {dims:?}: too many values"),
            )),
        }
    }

    /// Four non-negative long longs: a tensor's shape.
    fn dims(&mut self, what: &str) -> Result<Dims, DlibError> {
        let mut dims = [0i64; 4];
        for d in &mut dims {
            let at = self.pos;
            *d = self.long(what)?;
            if *d < 0 {
                return Err(self.invalid(at, what, format!("negative tensor dimension {d}")));
            }
        }
        Ok(dims)
    }

    /// A tensor of parameters, which must hold `expected` values (one of them, when a layer may be
    /// written with or without its biases), all finite. The count is checked before anything is read
    /// or allocated. Returns the values, little-endian IEEE floats in the file.
    pub(crate) fn parameters(
        &mut self,
        what: &str,
        expected: &[usize],
    ) -> Result<Vec<f32>, DlibError> {
        let at = self.pos;
        let (dims, count) = self.tensor_header(what)?;
        if !expected.contains(&count) {
            return Err(DlibError::Mismatch {
                offset: at,
                what: format!("{what}: number of values"),
                expected: expected
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
                found: format!("{count} (shape {dims:?})"),
            });
        }
        let data_at = self.pos;
        let raw = self.take(count * 4, what)?;
        let values: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(self.invalid(
                data_at + 4 * i,
                what,
                format!("value {i} is {}, not a finite number", values[i]),
            ));
        }
        Ok(values)
    }

    /// A tensor whose values dlib keeps for training only (gradients, cached outputs): passed over
    /// (the file must hold it), never allocated.
    pub(crate) fn skip_tensor(&mut self, what: &str) -> Result<(), DlibError> {
        let (_, count) = self.tensor_header(what)?;
        self.take(count * 4, what)?;
        Ok(())
    }

    /// An `alias_tensor` (version 1, then four long longs): a view of the parameters with this shape.
    pub(crate) fn alias(&mut self, what: &str) -> Result<Dims, DlibError> {
        let at = self.pos;
        let version = self.int(what)?;
        if version != 1 {
            return Err(DlibError::Mismatch {
                offset: at,
                what: format!("{what}: alias tensor version"),
                expected: "1".to_string(),
                found: version.to_string(),
            });
        }
        self.dims(what)
    }
}

/// The number of values of a tensor of shape `dims`, if it fits a `usize`.
fn element_count(dims: &Dims) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

/// The value of dlib's reserved exponents (infinity, minus infinity, and NaN for every other value
/// from 32000 up, as dlib's conversion treats them), or None for an ordinary exponent.
fn special(exponent: i64) -> Option<f64> {
    match exponent {
        EXPONENT_INF => Some(f64::INFINITY),
        EXPONENT_NINF => Some(f64::NEG_INFINITY),
        e if e > EXPONENT_NINF => Some(f64::NAN),
        _ => None,
    }
}

/// `x * 2^e` without forming an out-of-range power of two (int16 exponents reach far beyond f64's).
fn ldexp(mut x: f64, mut e: i64) -> f64 {
    const STEP: i64 = 1000;
    while e > STEP && x.is_finite() && x != 0.0 {
        x *= 2f64.powi(STEP as i32);
        e -= STEP;
    }
    while e < -STEP && x.is_finite() && x != 0.0 {
        x *= 2f64.powi(-STEP as i32);
        e += STEP;
    }
    // |e| <= 1000 now, or x is already 0 or infinite.
    x * 2f64.powi(e.clamp(-STEP, STEP) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_decode_as_dlib_packs_them() {
        // 7 as an int, -300 as an int, 150 as a size_t, a 9-byte size refused.
        let bytes = [0x01, 0x07, 0x82, 0x2c, 0x01, 0x01, 0x96];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.int("a").unwrap(), 7);
        assert_eq!(r.int("b").unwrap(), -300);
        assert_eq!(r.unsigned_long("c").unwrap(), 150);
        assert_eq!(r.remaining(), 0);
        assert!(matches!(
            Reader::new(&[0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0]).long("d"),
            Err(DlibError::Invalid { offset: 0, .. })
        ));
        // An int whose magnitude needs 32 bits does not fit.
        assert!(Reader::new(&[0x04, 0, 0, 0, 0x80]).int("e").is_err());
        // The sign bit on an unsigned type is an error, as in dlib.
        assert!(Reader::new(&[0x81, 0x01]).unsigned_long("f").is_err());
    }

    #[test]
    fn floats_decode_mantissa_and_exponent() {
        // 3 * 2^-2 = 0.75 as a float, -5 * 2^1 = -10 as a double.
        let bytes = [0x01, 0x03, 0x81, 0x02, 0x81, 0x05, 0x01, 0x01];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.f32("a").unwrap(), 0.75);
        assert_eq!(r.f64("b").unwrap(), -10.0);
        // Exponent 32000 is infinity.
        let inf = [0x01, 0x01, 0x02, 0x00, 0x7d];
        assert_eq!(Reader::new(&inf).f32("c").unwrap(), f32::INFINITY);
        // The old text encoding is refused, not misread.
        assert!(Reader::new(b"1.5 ").f32("d").is_err());
        // Exponents far outside f64's range saturate instead of misbehaving.
        let huge = [0x01, 0x01, 0x02, 0xff, 0x7c];
        assert_eq!(Reader::new(&huge).f64("e").unwrap(), f64::INFINITY);
        let tiny = [0x01, 0x01, 0x82, 0xff, 0x7c];
        assert_eq!(Reader::new(&tiny).f64("f").unwrap(), 0.0);
    }

    #[test]
    fn an_absurd_tensor_is_refused_before_allocation() {
        // version 2, shape 1 x 1 x 2^40 x 2^20: checked against the expected count before anything
        // else, and passed over only if the file held it.
        let bytes = [
            0x01, 0x02, 0x01, 0x01, 0x01, 0x01, 0x06, 0, 0, 0, 0, 0, 0x01, 0x03, 0, 0, 0x10,
        ];
        let err = Reader::new(&bytes).parameters("weights", &[4]).unwrap_err();
        assert!(
            matches!(err, DlibError::Mismatch { offset: 0, .. }),
            "{err}"
        );
        let err = Reader::new(&bytes).skip_tensor("state").unwrap_err();
        assert!(
            matches!(err, DlibError::Truncated { offset: 17, .. }),
            "{err}"
        );
        // A shape whose product overflows is refused as such.
        let mut overflow = vec![0x01, 0x02];
        for _ in 0..4 {
            overflow.extend([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        }
        assert!(matches!(
            Reader::new(&overflow).skip_tensor("state"),
            Err(DlibError::Invalid { offset: 0, .. })
        ));
    }

    #[test]
    fn parameters_must_have_the_expected_count_and_be_finite() {
        let mut bytes = vec![0x01, 0x02, 0x01, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01];
        bytes.extend(1.5f32.to_le_bytes());
        bytes.extend((-2.0f32).to_le_bytes());
        assert_eq!(
            Reader::new(&bytes).parameters("p", &[2]).unwrap(),
            vec![1.5, -2.0]
        );
        assert!(matches!(
            Reader::new(&bytes).parameters("p", &[3]),
            Err(DlibError::Mismatch { .. })
        ));
        let mut nan = bytes.clone();
        nan[14..18].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(matches!(
            Reader::new(&nan).parameters("p", &[2]),
            Err(DlibError::Invalid { offset: 14, .. })
        ));
        // Cut inside the values.
        assert!(matches!(
            Reader::new(&bytes[..15]).parameters("p", &[2]),
            Err(DlibError::Truncated { .. })
        ));
    }

    #[test]
    fn strings_and_versions() {
        let bytes = b"\x01\x05relu_\x01\x05relu_\x01\xffx";
        let mut r = Reader::new(bytes);
        assert_eq!(r.version("v", &["relu_", "relu_2"]).unwrap(), 0);
        let err = r.version("v", &["relu_2"]).unwrap_err();
        assert!(err.to_string().contains("\"relu_\""), "{err}");
        // A 255-byte string where a short version name is expected: refused without reading it.
        assert!(matches!(
            r.version("v", &["relu_"]),
            Err(DlibError::Invalid { offset: 14, .. })
        ));
        assert!(Reader::new(b"2").bool("b").is_err());
        assert!(Reader::new(b"").bool("b").is_err());
    }
}
