//! lib0 primitives: varUint (7 bits per byte, little-endian groups), varUint8Array, varString.

use crate::ProtocolError;

/// A cursor over untrusted bytes. Every read is bounds-checked and returns an error on EOF.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn read_u8(&mut self) -> Result<u8, ProtocolError> {
        let b = *self.buf.get(self.pos).ok_or(ProtocolError::UnexpectedEof)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn read_exact(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if n > self.remaining() {
            return Err(ProtocolError::LengthOutOfBounds {
                len: n as u64,
                remaining: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// lib0 varUint. lib0 itself stops at 2^53; we accept up to 64 bits and refuse longer.
    ///
    /// Non-minimal encodings (a final `0x00` group, e.g. `80 00` for 0) are refused too: neither
    /// lib0 nor yrs writes them, and accepting them would give one value many byte forms.
    pub fn read_var_u64(&mut self) -> Result<u64, ProtocolError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.read_u8()?;
            let group = u64::from(b & 0x7f);
            // The 10th byte (shift 63) may only carry the single top bit.
            if shift >= 64 || (shift == 63 && group > 1) {
                return Err(ProtocolError::VarIntOverflow);
            }
            value |= group << shift;
            if b & 0x80 == 0 {
                if shift > 0 && group == 0 {
                    return Err(ProtocolError::VarIntOverflow);
                }
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// A varUint that must fit in `u32` (clocks, lengths and counts in yrs are `u32`; yrs's own
    /// reader silently wraps larger values, which would make it see a different number than we do).
    pub fn read_var_u32(&mut self) -> Result<u32, ProtocolError> {
        let v = self.read_var_u64()?;
        u32::try_from(v).map_err(|_| ProtocolError::ValueOutOfRange {
            value: v,
            max: u64::from(u32::MAX),
        })
    }

    /// lib0 varInt: first byte = continue bit, sign bit, 6 value bits; then 7 bits per byte.
    /// Returned as i64. Magnitudes of 2^63 and above are refused: yrs 0.28.1 negates the value
    /// (overflow panic with debug assertions on `-i64::MIN`) and shifts an 11th byte by 69 bits
    /// (shift-overflow panic), so those inputs must never reach it. `-0` (`0x40`) is accepted
    /// because lib0 writes it for JavaScript's negative zero.
    pub fn read_var_i64(&mut self) -> Result<i64, ProtocolError> {
        let first = self.read_u8()?;
        let negative = first & 0x40 != 0;
        let mut magnitude: u64 = u64::from(first & 0x3f);
        let mut shift = 6u32;
        let mut b = first;
        while b & 0x80 != 0 {
            b = self.read_u8()?;
            let group = u64::from(b & 0x7f);
            // Bits at position 63 and above would not fit in a non-negative i64 magnitude.
            if shift >= 63 || (group >> (63 - shift)) != 0 {
                return Err(ProtocolError::VarIntOverflow);
            }
            if b & 0x80 == 0 && group == 0 {
                return Err(ProtocolError::VarIntOverflow);
            }
            magnitude |= group << shift;
            shift += 7;
        }
        let v = i64::try_from(magnitude).map_err(|_| ProtocolError::VarIntOverflow)?;
        Ok(if negative { -v } else { v })
    }

    /// varUint length prefix, checked against what is left so no caller allocates blindly.
    pub fn read_len(&mut self) -> Result<usize, ProtocolError> {
        let len = self.read_var_u64()?;
        if len > self.remaining() as u64 {
            return Err(ProtocolError::LengthOutOfBounds {
                len,
                remaining: self.remaining(),
            });
        }
        Ok(len as usize)
    }

    pub fn read_var_u8_array(&mut self) -> Result<&'a [u8], ProtocolError> {
        let len = self.read_len()?;
        self.read_exact(len)
    }

    /// A varUint count of items that each take at least `min_item_bytes` bytes of the input.
    /// A count the remaining bytes could not possibly hold is refused here, before any caller
    /// (or yrs, which pre-allocates from such counts) reserves memory for it.
    pub fn read_count(&mut self, min_item_bytes: usize) -> Result<u64, ProtocolError> {
        let n = self.read_var_u64()?;
        check_count(n, min_item_bytes, self.remaining())?;
        Ok(n)
    }

    pub fn read_var_string(&mut self) -> Result<&'a str, ProtocolError> {
        let bytes = self.read_var_u8_array()?;
        std::str::from_utf8(bytes).map_err(|_| ProtocolError::InvalidUtf8)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

/// `count` items of at least `min_item_bytes` each must fit in `remaining` bytes.
pub(crate) fn check_count(
    count: u64,
    min_item_bytes: usize,
    remaining: usize,
) -> Result<(), ProtocolError> {
    let need = count.saturating_mul(min_item_bytes as u64);
    if need > remaining as u64 {
        return Err(ProtocolError::CountTooLarge { count, remaining });
    }
    Ok(())
}

pub fn write_var_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn write_var_u8_array(out: &mut Vec<u8>, bytes: &[u8]) {
    write_var_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub fn write_var_string(out: &mut Vec<u8>, s: &str) {
    write_var_u8_array(out, s.as_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn var_u64_roundtrip() {
        for v in [0u64, 1, 127, 128, 300, 1 << 32, u64::MAX] {
            let mut out = Vec::new();
            write_var_u64(&mut out, v);
            assert_eq!(Reader::new(&out).read_var_u64(), Ok(v));
        }
    }

    #[test]
    fn var_u64_rejects_overlong_and_truncated() {
        assert_eq!(
            Reader::new(&[0x80; 11]).read_var_u64(),
            Err(ProtocolError::VarIntOverflow)
        );
        assert_eq!(
            Reader::new(&[0x80]).read_var_u64(),
            Err(ProtocolError::UnexpectedEof)
        );
    }

    proptest::proptest! {
        /// Our readers decode exactly what yrs's writers produce (varUint, varInt).
        #[test]
        fn reads_what_yrs_writes(u in proptest::prelude::any::<u64>(), i in (i64::MIN + 1)..=i64::MAX) {
            use yrs::encoding::write::Write;
            let mut out = Vec::new();
            out.write_var(u);
            out.write_var(i);
            let mut r = Reader::new(&out);
            proptest::prop_assert_eq!(r.read_var_u64(), Ok(u));
            proptest::prop_assert_eq!(r.read_var_i64(), Ok(i));
            proptest::prop_assert!(r.is_empty());
        }
    }

    #[test]
    fn var_i64_edges() {
        use yrs::encoding::write::Write;
        for v in [
            0i64,
            1,
            -1,
            63,
            -63,
            64,
            -64,
            8191,
            8192,
            i64::MAX,
            -i64::MAX,
        ] {
            let mut out = Vec::new();
            out.write_var(v);
            assert_eq!(Reader::new(&out).read_var_i64(), Ok(v), "{v}");
        }
        // lib0's -0 and a 10-byte magnitude of exactly 2^63 (refused).
        assert_eq!(Reader::new(&[0x40]).read_var_i64(), Ok(0));
        let mut min = vec![0xc0];
        min.extend_from_slice(&[0x80; 8]);
        min.push(0x02);
        assert_eq!(
            Reader::new(&min).read_var_i64(),
            Err(ProtocolError::VarIntOverflow)
        );
    }

    #[test]
    fn length_prefix_cannot_exceed_input() {
        let mut out = Vec::new();
        write_var_u64(&mut out, 1 << 40);
        assert!(matches!(
            Reader::new(&out).read_var_u8_array(),
            Err(ProtocolError::LengthOutOfBounds { .. })
        ));
    }
}
