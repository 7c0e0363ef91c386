//! The value pointer Redis keeps for a key of our type, in the smallest form
//! its state fits (see `limiter::packed`), told apart by its low bits:
//!
//! - `…1`: a word, shifted left by one: no allocation at all;
//! - `…t0` with `t` = 1..=3 in bits 1–2: a 16-byte pair of that kind;
//! - `…000`: a boxed full [`State`] (allocations are 8-aligned).

use std::ffi::c_void;
use std::ops::Deref;

use crate::limiter::packed::{self, Packed};
use crate::limiter::State;

const WORD_TAG: usize = 1;
const PAIR_TAG_MASK: usize = 0b110;
const PAIR_TAG_SHIFT: u32 = 1;

/// A state read from a value: a copy for the small forms, the boxed state
/// itself otherwise.
pub enum Held<'a> {
    Copied(State),
    Boxed(&'a mut State),
}

impl Deref for Held<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        match self {
            Held::Copied(s) => s,
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
            (ptr | packed::pair_tag(kind) << PAIR_TAG_SHIFT) as *mut c_void
        }
        None => Box::into_raw(Box::new(state)).cast(),
    }
}

/// What a value pointer is.
enum Form {
    Word(u64),
    Pair(packed::SmallKind, *mut [u64; 2]),
    Boxed(*mut State),
}

fn form(value: *const c_void) -> Option<Form> {
    let bits = value as usize;
    if bits & WORD_TAG != 0 {
        return Some(Form::Word((bits >> 1) as u64));
    }
    let tag = (bits & PAIR_TAG_MASK) >> PAIR_TAG_SHIFT;
    let ptr = bits & !PAIR_TAG_MASK;
    if ptr == 0 {
        return None;
    }
    Some(match packed::pair_kind(tag) {
        Some(kind) => Form::Pair(kind, ptr as *mut [u64; 2]),
        None => Form::Boxed(ptr as *mut State),
    })
}

/// The state behind a value pointer (`None`: null, or a word no build
/// makes).
///
/// # Safety
/// `value` must come from [`into_value`] and not be freed yet; a boxed state
/// is handed out mutably, so no other reference to it may be alive.
pub unsafe fn held<'a>(value: *mut c_void) -> Option<Held<'a>> {
    Some(match form(value)? {
        Form::Word(w) => Held::Copied(packed::unpack_word(w)?),
        // SAFETY: a pair or box made by into_value, alive (contract).
        Form::Pair(kind, p) => Held::Copied(packed::unpack_pair(kind, unsafe { *p })),
        // SAFETY: as above; exclusive by contract.
        Form::Boxed(s) => Held::Boxed(unsafe { &mut *s }),
    })
}

/// Writes `state` into the value in place when it keeps the value's form;
/// gives it back otherwise (the caller then makes a new value).
///
/// # Safety
/// As for [`held`].
pub unsafe fn overwrite(value: *mut c_void, state: State) -> Result<(), State> {
    match (form(value), packed::pack(&state)) {
        (Some(Form::Boxed(s)), None) => {
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
        // SAFETY: a live box made by into_value (contract).
        Some(Form::Boxed(s)) => std::mem::size_of::<State>() + unsafe { &*s }.heap_size(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::fixed_window::FixedWindowState;
    use crate::limiter::sliding_window::SlidingApproxState;
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
            State::SlidingApprox(SlidingApproxState {
                start_ms: NOW,
                prev: 5000,
                cur: 1,
            }),
            // the full state
            State::TokenBucket(TokenBucketState::new(u128::MAX >> 8, NOW)),
        ];
        let bytes = [0, 0, 16, 16, 16, std::mem::size_of::<State>()];
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
