//! The value pointer Redis keeps for a key of our type, in the smallest form
//! its state fits (see `limiter::packed`), told apart by its low bits:
//!
//! - `…1`: a word, shifted left by one: no allocation at all;
//! - `…t0` with `t` = 1 or 2 in bits 1–2: a 16-byte pair of that kind;
//! - `…110`: a non-empty `EXACT` log's own allocation (`limiter::thin`);
//! - `…000`: a boxed full [`State`] (allocations are 8-aligned).

use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::NonNull;

use crate::limiter::packed::{self, Packed};
use crate::limiter::sliding::log::ExactLog;
use crate::limiter::State;

const WORD_TAG: usize = 1;
const TAG_MASK: usize = 0b110;
const TAG_SHIFT: u32 = 1;
const EXACT_TAG: usize = 3;

/// A state read from a value: a copy for the small forms, a view of the
/// `EXACT` log's allocation (never freed through it), or the boxed state.
pub enum Held<'a> {
    Copied(State),
    Exact(ManuallyDrop<State>),
    Boxed(&'a State),
}

impl Deref for Held<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        match self {
            Held::Copied(s) => s,
            Held::Exact(s) => s,
            Held::Boxed(s) => s,
        }
    }
}

/// A new value pointer holding `state`, in its smallest form.
pub fn into_value(state: State) -> *mut c_void {
    match packed::pack(&state) {
        Some(Packed::Word(w)) => ((w as usize) << 1 | WORD_TAG) as *mut c_void,
        Some(Packed::Pair(kind, pair)) => {
            let ptr = Box::into_raw(Box::new(pair)) as usize;
            (ptr | packed::pair_tag(kind) << TAG_SHIFT) as *mut c_void
        }
        None => match state {
            // An empty log has no allocation of its own: boxed like the rest.
            State::SlidingExact(log) => match log.into_raw() {
                Some(ptr) => (ptr.as_ptr() as usize | EXACT_TAG << TAG_SHIFT) as *mut c_void,
                None => Box::into_raw(Box::new(State::SlidingExact(ExactLog::default()))).cast(),
            },
            state => Box::into_raw(Box::new(state)).cast(),
        },
    }
}

/// What a value pointer is.
enum Form {
    Word(u64),
    Pair(packed::SmallKind, *mut [u64; 2]),
    Exact(NonNull<u8>),
    Boxed(*mut State),
}

fn form(value: *const c_void) -> Option<Form> {
    let bits = value as usize;
    if bits & WORD_TAG != 0 {
        return Some(Form::Word((bits >> 1) as u64));
    }
    let tag = (bits & TAG_MASK) >> TAG_SHIFT;
    let ptr = bits & !TAG_MASK;
    if ptr == 0 {
        return None;
    }
    Some(match (tag, packed::pair_kind(tag)) {
        (_, Some(kind)) => Form::Pair(kind, ptr as *mut [u64; 2]),
        (EXACT_TAG, None) => Form::Exact(NonNull::new(ptr as *mut u8)?),
        _ => Form::Boxed(ptr as *mut State),
    })
}

/// The state behind a value pointer (`None`: null, or a word no build
/// makes).
///
/// # Safety
/// `value` must come from [`into_value`] and stay alive and unchanged while
/// the result is used.
pub unsafe fn held<'a>(value: *mut c_void) -> Option<Held<'a>> {
    Some(match form(value)? {
        Form::Word(w) => Held::Copied(packed::unpack_word(w)?),
        // SAFETY: a pair made by into_value, alive (contract).
        Form::Pair(kind, p) => Held::Copied(packed::unpack_pair(kind, unsafe { *p })?),
        // SAFETY: a log's allocation made by into_value, alive (contract);
        // ManuallyDrop: borrowed, never freed through the view.
        Form::Exact(p) => Held::Exact(ManuallyDrop::new(State::SlidingExact(unsafe {
            ExactLog::from_raw(p)
        }))),
        // SAFETY: a box made by into_value, alive (contract).
        Form::Boxed(s) => Held::Boxed(unsafe { &*s }),
    })
}

/// Writes `state` into the value in place when it keeps the value's form;
/// gives it back otherwise (the caller then makes a new value).
///
/// # Safety
/// As for [`held`].
pub unsafe fn overwrite(value: *mut c_void, state: State) -> Result<(), State> {
    let exact = matches!(state, State::SlidingExact(ref log) if !log.is_empty());
    match (form(value), packed::pack(&state)) {
        (Some(Form::Boxed(s)), None) if !exact => {
            // SAFETY: a live box made by into_value (contract).
            unsafe { *s = state };
            Ok(())
        }
        (Some(Form::Pair(kind, p)), Some(Packed::Pair(new_kind, pair))) if kind == new_kind => {
            // SAFETY: a live pair made by into_value (contract).
            unsafe { *p = pair };
            Ok(())
        }
        _ => Err(state),
    }
}

/// Frees a value made by [`into_value`].
///
/// # Safety
/// `value` must come from [`into_value`] and be freed only once.
pub unsafe fn free(value: *mut c_void) {
    match form(value) {
        // SAFETY: made by Box::into_raw in into_value, freed once (contract).
        Some(Form::Pair(_, p)) => drop(unsafe { Box::from_raw(p) }),
        // SAFETY: as above (ExactLog::into_raw in into_value).
        Some(Form::Exact(p)) => drop(unsafe { ExactLog::from_raw(p) }),
        // SAFETY: as above.
        Some(Form::Boxed(s)) => drop(unsafe { Box::from_raw(s) }),
        Some(Form::Word(_)) | None => {}
    }
}

/// Bytes the value holds on the heap, for `MEMORY USAGE` (a word: none).
///
/// # Safety
/// As for [`held`].
pub unsafe fn heap_bytes(value: *mut c_void) -> usize {
    match form(value) {
        Some(Form::Word(_)) | None => 0,
        Some(Form::Pair(..)) => std::mem::size_of::<[u64; 2]>(),
        // SAFETY: a live log allocation (contract), only borrowed here.
        Some(Form::Exact(p)) => ManuallyDrop::new(unsafe { ExactLog::from_raw(p) }).heap_size(),
        // SAFETY: a live box made by into_value (contract).
        Some(Form::Boxed(s)) => std::mem::size_of::<State>() + unsafe { &*s }.heap_size(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::fixed_window::FixedWindowState;
    use crate::limiter::sliding::approx::SlidingApproxState;
    use crate::limiter::sliding::log::ExactLog;
    use crate::limiter::token_bucket::{TokenBucketState, PICO};

    const NOW: u64 = 1_764_000_000_000;

    fn read(v: *mut c_void) -> State {
        // SAFETY: made by into_value in these tests, not freed.
        State::clone(&unsafe { held(v) }.expect("a value"))
    }

    #[test]
    fn every_form_reads_back_and_frees() {
        let states = [
            // a word
            State::TokenBucket(TokenBucketState::new(999 * PICO, NOW)),
            State::FixedWindow(FixedWindowState {
                start_ms: NOW,
                count: 3,
            }),
            // pairs of each kind
            State::TokenBucket(TokenBucketState::new(999 * PICO + 1, NOW)),
            State::FixedWindow(FixedWindowState {
                start_ms: NOW,
                count: u64::MAX,
            }),
            // the full state
            State::SlidingApprox(SlidingApproxState {
                start_ms: NOW,
                prev: 5000,
                cur: 1,
            }),
            State::TokenBucket(TokenBucketState::new(u128::MAX >> 8, NOW)),
            State::SlidingExact(ExactLog::default()),
            // an EXACT log in its own allocation: length, 24-byte summary,
            // entries of 7, 2 and 3 bytes
            State::SlidingExact(ExactLog::from_entries(&[
                (NOW, 1),
                (NOW + 5, 2),
                (NOW + 300, 3),
            ])),
        ];
        let full = std::mem::size_of::<State>();
        let bytes = [0, 0, 16, 16, full, full, full, 4 + 24 + 7 + 2 + 3];
        for (state, want) in states.iter().zip(bytes) {
            let v = into_value(state.clone());
            assert_eq!(&read(v), state);
            // SAFETY: as in read(); freed once below.
            assert_eq!(unsafe { heap_bytes(v) }, want, "{state:?}");
            // SAFETY: made above, freed once.
            unsafe { free(v) };
        }
    }

    #[test]
    fn overwrite_keeps_the_form_or_hands_the_state_back() {
        let pair = State::TokenBucket(TokenBucketState::new(7, NOW));
        let v = into_value(pair);
        let next = State::TokenBucket(TokenBucketState::new(8, NOW + 1));
        // SAFETY: v is live and not borrowed.
        assert_eq!(unsafe { overwrite(v, next.clone()) }, Ok(()));
        assert_eq!(read(v), next);
        // A state that fits a word does not go into a pair: handed back.
        let whole = State::TokenBucket(TokenBucketState::new(PICO, NOW));
        // SAFETY: as above.
        assert_eq!(unsafe { overwrite(v, whole.clone()) }, Err(whole));
        // Another kind of pair is handed back too.
        let fw = State::FixedWindow(FixedWindowState {
            start_ms: NOW,
            count: u64::MAX,
        });
        // SAFETY: as above.
        assert_eq!(unsafe { overwrite(v, fw.clone()) }, Err(fw));
        // SAFETY: made above, freed once.
        unsafe { free(v) };
        // A word is never written in place.
        let word = into_value(State::FixedWindow(FixedWindowState {
            start_ms: NOW,
            count: 1,
        }));
        let next = State::FixedWindow(FixedWindowState {
            start_ms: NOW,
            count: 2,
        });
        // SAFETY: as above.
        assert_eq!(unsafe { overwrite(word, next.clone()) }, Err(next));
    }

    #[test]
    fn null_is_no_value() {
        // SAFETY: null is never dereferenced.
        assert!(unsafe { held(std::ptr::null_mut()) }.is_none());
    }
}
