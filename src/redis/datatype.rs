//! The `ratelimit` data type: one limiter's state per key.
//!
//! The value is a state in its smallest in-memory form (`super::value`).
//! RDB holds one string: the versioned encoding
//! of `crate::limiter::state`. The AOF rewrite emits `RL.SETSTATE key
//! payload` (Redis adds the `PEXPIREAT` itself).

use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use redis_module::{native_types::RedisType, raw, Context, RedisError};

use super::value::{self, Held};
use crate::limiter::State;

/// Redis-level encoding version of the type. Payloads also carry their own
/// format byte; both must be known or the load is refused.
pub const ENCODING_VERSION: i32 = 1;

pub static RATELIMIT_TYPE: RedisType = RedisType::new(
    "ratelimit",
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        // 4 is the highest Redis 7.0 knows (copy, mem_usage2 ...); we use
        // nothing newer.
        version: 4,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        mem_usage: Some(mem_usage),
        digest: Some(digest),
        free: Some(free),
        aux_load: None,
        aux_save: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: Some(copy),
        defrag: None,
        mem_usage2: None,
        free_effort2: None,
        unlink2: None,
        copy2: None,
        aux_save2: None,
    },
);

/// The internal command that carries a state to replicas and the AOF.
pub const SETSTATE: &std::ffi::CStr = c"RL.SETSTATE";

/// The internal command that carries a grant on an `EXACT` log as a delta.
pub const EXACTADD: &std::ffi::CStr = c"RL.EXACTADD";

unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    if encver != ENCODING_VERSION {
        // A newer build wrote this; guessing would corrupt limits.
        raw::redis_log(
            ptr::null_mut(),
            &format!("ratelimit: refusing state with unknown encoding version {encver}"),
        );
        return ptr::null_mut();
    }
    let Ok(buf) = raw::load_string_buffer(rdb) else {
        return ptr::null_mut();
    };
    match State::decode(buf.as_ref()) {
        Ok(state) => value::into_value(state),
        Err(e) => {
            raw::redis_log(ptr::null_mut(), &format!("ratelimit: {e}"));
            ptr::null_mut()
        }
    }
}

/// Reads the state behind a value pointer Redis hands back to us.
///
/// # Safety
/// `value` must be a pointer this module produced with `value::into_value`
/// and not yet freed: Redis only ever passes back values of this type, and
/// holds no other reference to it during a callback.
unsafe fn state<'a>(value: *const c_void) -> Option<Held<'a>> {
    // SAFETY: see the function's contract.
    unsafe { value::held(value.cast_mut()) }
}

unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    // SAFETY: Redis passes a value of this type.
    if let Some(s) = unsafe { state(value) } {
        raw::save_slice(rdb, s.encoded().as_slice());
    }
}

unsafe extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    // SAFETY: Redis passes a value of this type.
    let Some(s) = (unsafe { state(value) }) else {
        return;
    };
    let payload = s.encoded();
    let bytes = payload.as_slice();
    // SAFETY: "sb" takes a RedisModuleString and a (pointer, length) buffer;
    // both live until the call returns.
    unsafe {
        if let Some(emit) = raw::RedisModule_EmitAOF {
            emit(
                aof,
                SETSTATE.as_ptr(),
                c"sb".as_ptr(),
                key,
                bytes.as_ptr().cast::<c_char>(),
                bytes.len(),
            );
        }
    }
}

unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    // SAFETY: Redis passes a value of this type.
    unsafe { value::heap_bytes(value.cast_mut()) }
}

unsafe extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    // SAFETY: Redis passes a value of this type.
    let Some(s) = (unsafe { state(value) }) else {
        return;
    };
    let payload = s.encoded();
    let bytes = payload.as_slice();
    // SAFETY: the buffer outlives the calls; the digest API only reads it
    // (the C signature is not const).
    unsafe {
        if let (Some(add), Some(end)) = (
            raw::RedisModule_DigestAddStringBuffer,
            raw::RedisModule_DigestEndSequence,
        ) {
            add(md, bytes.as_ptr().cast_mut().cast::<c_char>(), bytes.len());
            end(md);
        }
    }
}

unsafe extern "C" fn free(value: *mut c_void) {
    // SAFETY: the value came from value::into_value and is freed once.
    unsafe { value::free(value) }
}

unsafe extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    // SAFETY: Redis passes a value of this type.
    match unsafe { state(value) } {
        Some(s) => value::into_value(State::clone(&s)),
        None => ptr::null_mut(),
    }
}

/// A key opened for reading and writing, closed on drop.
pub struct LimiterKey {
    key: *mut raw::RedisModuleKey,
}

impl LimiterKey {
    pub fn open(ctx: &Context, name: *mut raw::RedisModuleString) -> Self {
        let key = raw::open_key(ctx.ctx, name, raw::KeyMode::READ | raw::KeyMode::WRITE);
        Self { key }
    }

    /// The state the key holds; `None` when the key does not exist;
    /// `WRONGTYPE` when it holds another Redis type.
    pub fn state(&mut self) -> Result<Option<Held<'_>>, RedisError> {
        match self.value()? {
            // SAFETY: a value of our type, borrowed for as long as `self`
            // (and so the key) is, and only through this borrow.
            Some(v) => Ok(unsafe { value::held(v) }),
            None => Ok(None),
        }
    }

    /// The key's value pointer; `None` when the key does not exist;
    /// `WRONGTYPE` when it holds another Redis type.
    fn value(&self) -> Result<Option<*mut c_void>, RedisError> {
        // SAFETY: `self.key` is an open key for the life of `self`.
        unsafe {
            let (Some(key_type), Some(get_type), Some(get_value)) = (
                raw::RedisModule_KeyType,
                raw::RedisModule_ModuleTypeGetType,
                raw::RedisModule_ModuleTypeGetValue,
            ) else {
                return Err(RedisError::Str("ERR module API unavailable"));
            };
            if self.key.is_null() || key_type(self.key) == raw::REDISMODULE_KEYTYPE_EMPTY as c_int {
                return Ok(None);
            }
            if key_type(self.key) != raw::REDISMODULE_KEYTYPE_MODULE as c_int
                || get_type(self.key) != *RATELIMIT_TYPE.raw_type.borrow()
            {
                return Err(RedisError::WrongType);
            }
            Ok(Some(get_value(self.key)))
        }
    }

    /// The state redis-cell left in the key: its GCRA time in ns, a decimal
    /// string (`None`: not a string of that form, or no key).
    pub fn redis_cell_tat(&self) -> Option<u64> {
        // SAFETY: `self.key` is an open key for the life of `self`; the DMA
        // pointer is read only while the key stays open and unmodified, and
        // only `len` bytes of it.
        unsafe {
            let (key_type, dma) = (raw::RedisModule_KeyType?, raw::RedisModule_StringDMA?);
            if self.key.is_null() || key_type(self.key) != raw::REDISMODULE_KEYTYPE_STRING as c_int
            {
                return None;
            }
            let mut len = 0usize;
            let ptr = dma(self.key, &mut len, raw::REDISMODULE_READ as c_int);
            if ptr.is_null() || len == 0 || len > 20 {
                return None;
            }
            let bytes = std::slice::from_raw_parts(ptr.cast::<u8>(), len);
            if !bytes.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(bytes).ok()?.parse().ok()
        }
    }

    /// Stores `state`: in place when the key's value keeps its form (no
    /// allocation), else as a new value that replaces the old one (keeping
    /// the key's TTL).
    pub fn store(&mut self, state: State) -> Result<(), RedisError> {
        let Some(old) = self.value()? else {
            return self.replace(state);
        };
        // SAFETY: a value of our type; no reference into it is alive (this
        // takes `&mut self`, which every borrow of the state holds).
        let Err(state) = (unsafe { value::overwrite(old, state) }) else {
            return Ok(());
        };
        let new = value::into_value(state);
        let mut replaced: *mut c_void = ptr::null_mut();
        // SAFETY: the key is open for writing and holds a value of our type;
        // on success Redis owns `new` and hands back the old value, which is
        // ours to free.
        let status = unsafe {
            raw::RedisModule_ModuleTypeReplaceValue.map_or(
                raw::REDISMODULE_ERR as c_int,
                |replace| {
                    replace(
                        self.key,
                        *RATELIMIT_TYPE.raw_type.borrow(),
                        new,
                        &mut replaced,
                    )
                },
            )
        };
        if status != raw::REDISMODULE_OK as c_int {
            // SAFETY: Redis did not take the value; reclaim it.
            unsafe { value::free(new) };
            return Err(RedisError::Str("ERR could not store the limiter state"));
        }
        // SAFETY: the old value, no longer referenced by Redis.
        unsafe { value::free(replaced) };
        Ok(())
    }

    /// Stores `state` whatever the key held before (its TTL is dropped).
    pub fn replace(&mut self, state: State) -> Result<(), RedisError> {
        let value = value::into_value(state);
        // SAFETY: the key is open for writing; on success Redis owns `value`
        // and frees it through `free`.
        let status = unsafe {
            raw::RedisModule_ModuleTypeSetValue.map_or(raw::REDISMODULE_ERR as c_int, |set| {
                set(self.key, *RATELIMIT_TYPE.raw_type.borrow(), value)
            })
        };
        if status != raw::REDISMODULE_OK as c_int {
            // SAFETY: Redis did not take the value; reclaim it.
            unsafe { value::free(value) };
            return Err(RedisError::Str("ERR could not store the limiter state"));
        }
        Ok(())
    }

    /// When the key expires (absolute, ms); `None`: no expiry, or no key.
    pub fn expires_at(&self) -> Option<u64> {
        // SAFETY: `self.key` is an open key for the life of `self`.
        let at = unsafe { raw::RedisModule_GetAbsExpire.map(|get| get(self.key)) }?;
        u64::try_from(at).ok().filter(|&t| t > 0)
    }

    /// Sets the key to expire at `at_ms` (absolute, exact: replicas and the
    /// AOF get the same instant). `ttl_ms` is the same instant relative to the
    /// command's clock, for a server without `RedisModule_SetAbsExpire`
    /// (it exists from 7.0 on, so this is a safety net).
    pub fn expire_at(&mut self, at_ms: u64, ttl_ms: u64) {
        // SAFETY: the key is open for writing and holds a value.
        unsafe {
            if let Some(set_abs) = raw::RedisModule_SetAbsExpire {
                set_abs(self.key, i64::try_from(at_ms).unwrap_or(i64::MAX));
            } else if let Some(set_rel) = raw::RedisModule_SetExpire {
                set_rel(self.key, i64::try_from(ttl_ms).unwrap_or(i64::MAX));
            }
        }
    }
}

impl Drop for LimiterKey {
    fn drop(&mut self) {
        raw::close_key(self.key);
    }
}
