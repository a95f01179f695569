//! Checked access to guest linear memory. Every pointer and length that comes from a
//! guest goes through here: addresses are `u32` (wasm32 is unsigned), ranges are
//! computed in `u64` with overflow checks, and sizes are capped before the host
//! allocates anything.

use wasmer::MemoryView;

/// A guest supplied an address range, size or text the host refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestMemoryError {
    /// `[ptr, ptr + len)` is not inside linear memory.
    #[error("guest memory range out of bounds: ptr={ptr} len={len} memory size={size}")]
    OutOfBounds {
        /// Start address.
        ptr: u64,
        /// Length.
        len: u64,
        /// Current memory size in bytes.
        size: u64,
    },
    /// The guest asked the host to read more than the configured cap.
    #[error("guest value too large: {len} bytes (limit {limit})")]
    TooLarge {
        /// Requested length.
        len: u64,
        /// Limit.
        limit: u64,
    },
    /// Bytes that must be UTF-8 are not.
    #[error("invalid UTF-8 in guest string at {ptr} (len {len})")]
    InvalidUtf8 {
        /// Start address.
        ptr: u64,
        /// Length.
        len: u64,
    },
    /// A pointer is not aligned as its type requires.
    #[error("misaligned guest pointer {ptr} (alignment {align})")]
    Misaligned {
        /// The pointer.
        ptr: u64,
        /// Required alignment.
        align: u32,
    },
    /// The module exports no memory.
    #[error("plugin has no memory export")]
    NoMemory,
}

/// Interpret a wasm `i32` argument as the unsigned address or length it is.
#[inline]
pub fn u32_arg(v: i32) -> u32 {
    v as u32
}

/// Check that `[ptr, ptr + len)` lies inside a memory of `size` bytes.
pub fn check_range(ptr: u32, len: u64, size: u64) -> Result<(), GuestMemoryError> {
    let end = u64::from(ptr).checked_add(len);
    match end {
        Some(end) if end <= size => Ok(()),
        _ => Err(GuestMemoryError::OutOfBounds {
            ptr: u64::from(ptr),
            len,
            size,
        }),
    }
}

/// Check alignment of a guest pointer.
pub fn check_align(ptr: u32, align: u32) -> Result<(), GuestMemoryError> {
    if align > 1 && !ptr.is_multiple_of(align) {
        return Err(GuestMemoryError::Misaligned {
            ptr: u64::from(ptr),
            align,
        });
    }
    Ok(())
}

/// Copy `len` bytes at `ptr` out of guest memory, refusing more than `max`.
pub fn read_bytes(
    view: &MemoryView<'_>,
    ptr: u32,
    len: u32,
    max: usize,
) -> Result<Vec<u8>, GuestMemoryError> {
    let len64 = u64::from(len);
    if len64 > max as u64 {
        return Err(GuestMemoryError::TooLarge {
            len: len64,
            limit: max as u64,
        });
    }
    let size = view.data_size();
    check_range(ptr, len64, size)?;
    let mut buf = vec![0u8; len as usize];
    view.read(u64::from(ptr), &mut buf)
        .map_err(|_| GuestMemoryError::OutOfBounds {
            ptr: u64::from(ptr),
            len: len64,
            size,
        })?;
    Ok(buf)
}

/// Copy a UTF-8 string out of guest memory (strict decoding), refusing more than `max` bytes.
pub fn read_string(
    view: &MemoryView<'_>,
    ptr: u32,
    len: u32,
    max: usize,
) -> Result<String, GuestMemoryError> {
    let bytes = read_bytes(view, ptr, len, max)?;
    String::from_utf8(bytes).map_err(|_| GuestMemoryError::InvalidUtf8 {
        ptr: u64::from(ptr),
        len: u64::from(len),
    })
}

/// Copy `data` into guest memory at `ptr`, refusing a range outside memory.
pub fn write_bytes(view: &MemoryView<'_>, ptr: u32, data: &[u8]) -> Result<(), GuestMemoryError> {
    let size = view.data_size();
    check_range(ptr, data.len() as u64, size)?;
    view.write(u64::from(ptr), data)
        .map_err(|_| GuestMemoryError::OutOfBounds {
            ptr: u64::from(ptr),
            len: data.len() as u64,
            size,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_without_overflow() {
        assert!(check_range(0, 10, 10).is_ok());
        assert!(check_range(1, 10, 10).is_err());
        assert!(check_range(u32::MAX, u64::from(u32::MAX), 65536).is_err());
        assert!(check_range(u32::MAX, 0, 65536).is_err());
        assert!(check_range(65536, 0, 65536).is_ok());
        assert_eq!(u32_arg(-1), u32::MAX);
    }

    #[test]
    fn alignment() {
        assert!(check_align(8, 4).is_ok());
        assert!(check_align(6, 4).is_err());
        assert!(check_align(7, 1).is_ok());
    }
}
