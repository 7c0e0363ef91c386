//! An immutable byte buffer in one allocation that starts with its own
//! length, so the handle is one pointer (a `Box<[u8]>` is two words, and a
//! key's value pointer has room for one). `EXACT` logs live in these.

use std::alloc::{self, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Bytes before the data: the length, a native `u32` (the data needs no
/// alignment).
const HEADER: usize = 4;
/// Allocations are 8-aligned, which leaves a tagged pointer its low 3 bits.
pub const ALIGN: usize = 8;

/// A non-empty byte buffer of at most `u32::MAX` bytes behind one pointer.
pub struct ThinBytes(NonNull<u8>);

// SAFETY: ThinBytes owns its allocation exclusively, like Box<[u8]>.
unsafe impl Send for ThinBytes {}
// SAFETY: shared access is read-only, like &[u8].
unsafe impl Sync for ThinBytes {}

impl ThinBytes {
    fn layout(len: usize) -> Option<Layout> {
        Layout::from_size_align(HEADER.checked_add(len)?, ALIGN).ok()
    }

    /// A zeroed buffer of `len` bytes (`None`: empty or too long, or out of
    /// memory).
    pub fn zeroed(len: usize) -> Option<Self> {
        let n = u32::try_from(len).ok().filter(|&n| n > 0)?;
        let layout = Self::layout(len)?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc::alloc_zeroed(layout) })?;
        // SAFETY: the allocation holds at least HEADER bytes and is 8-aligned.
        unsafe { ptr.cast::<u32>().write(n) };
        Some(ThinBytes(ptr))
    }

    /// A copy of `bytes` (`None`: empty or too long, or out of memory).
    pub fn copy_of(bytes: &[u8]) -> Option<Self> {
        let mut out = Self::zeroed(bytes.len())?;
        out.copy_from_slice(bytes);
        Some(out)
    }

    fn len_of(&self) -> usize {
        // SAFETY: every ThinBytes starts with its length, written once.
        unsafe { self.0.cast::<u32>().read() as usize }
    }

    /// Bytes allocated, header included (for `MEMORY USAGE`).
    pub fn allocated(&self) -> usize {
        HEADER + self.len_of()
    }

    /// The pointer, given up (see [`ThinBytes::from_raw`]).
    pub fn into_raw(self) -> NonNull<u8> {
        let ptr = self.0;
        std::mem::forget(self);
        ptr
    }

    /// # Safety
    /// `ptr` must come from [`ThinBytes::into_raw`] and be taken back once.
    pub unsafe fn from_raw(ptr: NonNull<u8>) -> Self {
        ThinBytes(ptr)
    }
}

impl Deref for ThinBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the data follows the header, len_of() bytes, initialised.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(HEADER), self.len_of()) }
    }
}

impl DerefMut for ThinBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for deref; exclusive through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_ptr().add(HEADER), self.len_of()) }
    }
}

impl Drop for ThinBytes {
    fn drop(&mut self) {
        if let Some(layout) = Self::layout(self.len_of()) {
            // SAFETY: allocated with this very layout in zeroed().
            unsafe { alloc::dealloc(self.0.as_ptr(), layout) };
        }
    }
}

impl Clone for ThinBytes {
    fn clone(&self) -> Self {
        // A copy of a non-empty buffer that exists: fails only when memory
        // does, which aborts like any other allocation failure.
        match Self::copy_of(self) {
            Some(copy) => copy,
            None => alloc::handle_alloc_error(
                Self::layout(self.len_of()).unwrap_or(Layout::new::<u64>()),
            ),
        }
    }
}

impl std::fmt::Debug for ThinBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for ThinBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for ThinBytes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_copies_and_gives_back_its_bytes() {
        let a = ThinBytes::copy_of(b"hello").expect("alloc");
        assert_eq!(&*a, b"hello");
        assert_eq!(a.allocated(), HEADER + 5);
        let b = a.clone();
        assert_eq!(a, b);
        let raw = b.into_raw();
        assert_eq!(raw.as_ptr() as usize % ALIGN, 0);
        // SAFETY: from into_raw above, taken back once.
        let c = unsafe { ThinBytes::from_raw(raw) };
        assert_eq!(&*c, b"hello");
        let mut z = ThinBytes::zeroed(3).expect("alloc");
        assert_eq!(&*z, &[0, 0, 0]);
        z[1] = 7;
        assert_eq!(&*z, &[0, 7, 0]);
    }

    #[test]
    fn empty_is_not_a_buffer() {
        assert!(ThinBytes::zeroed(0).is_none());
        assert!(ThinBytes::copy_of(b"").is_none());
    }
}
