//! lib.rs — objective "keel-template-objective", a Rust starting point for a Keel objective
//! plugin (ABI 1.0).
//!
//! Formula (EDIT HERE, in `compute` below): token-level REINFORCE with a truncated importance
//! weight against the sampler, the weight taken from logp_frozen so it carries no gradient:
//!     loss          = −(1/S) Σ_t m_t · sg[min(exp(frozen_t − logp_rollout_t), cap)] · Â_t · logp_t
//!     ∂loss/∂logp_t = −m_t · min(exp(frozen_t − logp_rollout_t), cap) · Â_t / S
//! S = total_sequences (the whole optimizer-step batch): never divide by counts of the call.
//! One FLOAT parameter `cap` (default 5, range [1e-9, +inf]); one metric `is_weight_mean`
//! (TOKEN_MEAN); aggregation "seq-mean-token-sum". A NaN/Inf input on an unmasked token is
//! KEEL_ERR_NUMERIC; unmasked tokens with total_sequences <= 0 are KEEL_ERR_INVALID_ARGUMENT.
//!
//! Rules this file keeps (docs/abi.md): the only exported symbol is `keel_plugin_entry`; the
//! descriptor, decls and strings are immutable statics; all per-run state lives in the
//! instance (Box, create/destroy); no mutable globals; a panic never unwinds into the host
//! (see `guard`). Build: `make` → ./libkeel-template-objective.so; then
//! `keel plugins check ./libkeel-template-objective.so`.

use core::ffi::{c_char, c_void, CStr};
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

// =============================================================================================
// ABI mirror. keel/keel_plugin.h (`keel plugins include-dir`) is THE source of truth: these
// #[repr(C)] structs copy exactly the parts of it this plugin uses, field for field, in the
// header's order and with the header's types. If they ever disagree, the header wins and this
// file is wrong. The size asserts below pin the LP64 sizes of docs/abi.md rule 4.7.
// Nullable C function pointers are Option<extern "C" fn> (same size and layout, NULL = None).
// =============================================================================================

pub const KEEL_ABI_MAJOR: u32 = 1;
pub const KEEL_ABI_MINOR: u32 = 0;

pub type KeelStatus = i32;
pub const KEEL_OK: KeelStatus = 0;
pub const KEEL_ERR_INVALID_ARGUMENT: KeelStatus = 1;
pub const KEEL_ERR_NUMERIC: KeelStatus = 2;
pub const KEEL_ERR_UNSUPPORTED: KeelStatus = 3;
pub const KEEL_ERR_STATE: KeelStatus = 4;
pub const KEEL_ERR_INTERNAL: KeelStatus = 5;

pub const KEEL_KIND_OBJECTIVE: u32 = 1;
pub const KEEL_KIND_REWARD: u32 = 2;
pub const KEEL_KIND_BASELINE: u32 = 3;

pub const KEEL_LOG_DEBUG: u32 = 0;
pub const KEEL_LOG_INFO: u32 = 1;
pub const KEEL_LOG_WARNING: u32 = 2;
pub const KEEL_LOG_ERROR: u32 = 3;

pub const KEEL_PARAM_FLOAT: u32 = 1;
pub const KEEL_PARAM_INT: u32 = 2;
pub const KEEL_PARAM_BOOL: u32 = 3;
pub const KEEL_PARAM_STRING: u32 = 4;

pub const KEEL_REDUCE_TOKEN_MEAN: u32 = 1;
pub const KEEL_REDUCE_SEQUENCE_MEAN: u32 = 2;
pub const KEEL_REDUCE_SUM: u32 = 3;

pub const KEEL_OBJECTIVE_USES_REF: u32 = 1;

/// keel_host: the host's table, given to create(); valid until destroy() returns.
#[repr(C)]
pub struct KeelHost {
    pub struct_size: u32,
    pub abi_major: u32,
    pub abi_minor: u32,
    pub reserved0: u32,
    pub context: *mut c_void,
    pub log:
        Option<unsafe extern "C" fn(host: *const KeelHost, level: u32, message: *const c_char)>,
    pub error: Option<unsafe extern "C" fn(host: *const KeelHost, message: *const c_char)>,
}

/// keel_param_decl: one declared parameter (written by the plugin).
#[repr(C)]
pub struct KeelParamDecl {
    pub struct_size: u32,
    pub r#type: u32, // keel_param_type
    pub name: *const c_char,
    pub doc: *const c_char,
    pub default_f: f64,
    pub default_i: i64,
    pub default_s: *const c_char,
    pub min_value: f64,
    pub max_value: f64,
}

/// keel_param_value: one parameter value passed to create() (written by the host).
#[repr(C)]
pub struct KeelParamValue {
    pub struct_size: u32,
    pub r#type: u32, // keel_param_type
    pub name: *const c_char,
    pub f: f64,
    pub i: i64,
    pub s: *const c_char, // borrowed: valid during create() only
}

/// keel_params: the values of all declared parameters, in declaration order.
#[repr(C)]
pub struct KeelParams {
    pub struct_size: u32,
    pub count: u32,
    pub values: *const KeelParamValue, // stride = values[k].struct_size (rule 4.4)
}

/// keel_scalar_decl: a named metric (objectives) or component (rewards).
#[repr(C)]
pub struct KeelScalarDecl {
    pub struct_size: u32,
    pub reduction: u32, // keel_reduction
    pub name: *const c_char,
    pub doc: *const c_char,
}

/// keel_objective_batch: a packed batch of responses (borrowed during compute only).
#[repr(C)]
pub struct KeelObjectiveBatch {
    pub struct_size: u32,
    pub reserved0: u32,
    pub num_sequences: i64,
    pub num_tokens: i64,
    pub seq_offsets: *const i64,
    pub group_ids: *const i64,
    pub mask: *const u8,
    pub advantages: *const f32,
    pub logp: *const f32,
    pub logp_frozen: *const f32, // NULL means "equal to logp"
    pub logp_old: *const f32,
    pub logp_rollout: *const f32,
    pub logp_ref: *const f32, // NULL unless the vtable sets KEEL_OBJECTIVE_USES_REF
    pub total_sequences: f64,
    pub total_tokens: f64,
    pub max_response_tokens: i64,
}

/// keel_objective_output: host-allocated outputs of one compute call.
#[repr(C)]
pub struct KeelObjectiveOutput {
    pub struct_size: u32,
    pub metric_count: u32,
    pub loss: f64,
    pub grad_logp: *mut f32, // [num_tokens], host-zeroed
    pub metrics: *mut f64,   // [metric_count]
}

pub type KeelObjectiveComputeFn = unsafe extern "C" fn(
    instance: *mut c_void,
    batch: *const KeelObjectiveBatch,
    out: *mut KeelObjectiveOutput,
) -> KeelStatus;

/// keel_objective_vtable: the objective's function table.
#[repr(C)]
pub struct KeelObjectiveVtable {
    pub struct_size: u32,
    pub flags: u32,
    pub metric_count: u32,
    pub reserved0: u32,
    pub metrics: *const KeelScalarDecl,
    pub aggregation: *const c_char,
    pub compute: Option<KeelObjectiveComputeFn>,
}

pub type KeelCreateFn = unsafe extern "C" fn(
    host: *const KeelHost,
    params: *const KeelParams,
    out_instance: *mut *mut c_void,
) -> KeelStatus;
pub type KeelDestroyFn = unsafe extern "C" fn(instance: *mut c_void);
pub type KeelGetExtensionFn = unsafe extern "C" fn(extension_id: *const c_char) -> *const c_void;
pub type KeelStateSizeFn =
    unsafe extern "C" fn(instance: *mut c_void, out_size: *mut u64) -> KeelStatus;
pub type KeelSaveStateFn =
    unsafe extern "C" fn(instance: *mut c_void, buffer: *mut c_void, size: u64) -> KeelStatus;
pub type KeelLoadStateFn =
    unsafe extern "C" fn(instance: *mut c_void, buffer: *const c_void, size: u64) -> KeelStatus;

/// keel_plugin: the descriptor returned by keel_plugin_entry (static, valid forever).
#[repr(C)]
pub struct KeelPlugin {
    pub struct_size: u32,
    pub abi_major: u32,
    pub abi_minor: u32,
    pub kind: u32, // keel_kind
    pub name: *const c_char,
    pub version: *const c_char,
    pub description: *const c_char,
    pub param_count: u32,
    pub reserved0: u32,
    pub params: *const KeelParamDecl,
    pub create: Option<KeelCreateFn>,
    pub destroy: Option<KeelDestroyFn>,
    pub get_extension: Option<KeelGetExtensionFn>,
    pub vtable: *const c_void,
    pub state_size: Option<KeelStateSizeFn>,
    pub save_state: Option<KeelSaveStateFn>,
    pub load_state: Option<KeelLoadStateFn>,
}

// LP64 sizes at ABI 1.0 (docs/abi.md rule 4.7). A mismatch fails the build, not the run.
const _: () = assert!(std::mem::size_of::<KeelHost>() == 40);
const _: () = assert!(std::mem::size_of::<KeelParamDecl>() == 64);
const _: () = assert!(std::mem::size_of::<KeelParamValue>() == 40);
const _: () = assert!(std::mem::size_of::<KeelParams>() == 16);
const _: () = assert!(std::mem::size_of::<KeelScalarDecl>() == 24);
const _: () = assert!(std::mem::size_of::<KeelObjectiveBatch>() == 120);
const _: () = assert!(std::mem::size_of::<KeelObjectiveOutput>() == 32);
const _: () = assert!(std::mem::size_of::<KeelObjectiveVtable>() == 40);
const _: () = assert!(std::mem::size_of::<KeelPlugin>() == 112);
// A few offsets too: a dropped or swapped field of a different size shows up here.
const _: () = assert!(std::mem::offset_of!(KeelHost, error) == 32);
const _: () = assert!(std::mem::offset_of!(KeelObjectiveBatch, logp_rollout) == 80);
const _: () = assert!(std::mem::offset_of!(KeelObjectiveBatch, total_sequences) == 96);
const _: () = assert!(std::mem::offset_of!(KeelObjectiveOutput, metrics) == 24);
const _: () = assert!(std::mem::offset_of!(KeelObjectiveVtable, compute) == 32);
const _: () = assert!(std::mem::offset_of!(KeelPlugin, params) == 48);
const _: () = assert!(std::mem::offset_of!(KeelPlugin, vtable) == 80);

// =============================================================================================
// Static descriptor data.
// =============================================================================================

/// Wrapper that lets the immutable descriptor data live in a `static`. Raw pointers are not
/// `Sync`, so a struct holding them cannot be a static on its own. Sharing is sound here
/// because (1) the wrapped values are never written after compile time (no `static mut`, no
/// interior mutability), and (2) every pointer inside points to other immutable statics or to
/// 'static C string literals. Any number of host threads may read them at once. Wrap only
/// such plain, immutable data in `Shared`.
#[repr(transparent)]
struct Shared<T>(T);
unsafe impl<T> Sync for Shared<T> {}

const NAME: &CStr = c"keel-template-objective"; // [a-z0-9-]+, how configs refer to it

static PARAMS: Shared<[KeelParamDecl; 1]> = Shared([KeelParamDecl {
    struct_size: std::mem::size_of::<KeelParamDecl>() as u32,
    r#type: KEEL_PARAM_FLOAT,
    name: c"cap".as_ptr(),
    doc: c"truncation C of the importance weight min(pi/mu, C)".as_ptr(),
    default_f: 5.0,
    default_i: 0,
    default_s: c"".as_ptr(),
    min_value: 1e-9,
    max_value: f64::INFINITY,
}]);

static METRICS: Shared<[KeelScalarDecl; 1]> = Shared([KeelScalarDecl {
    struct_size: std::mem::size_of::<KeelScalarDecl>() as u32,
    reduction: KEEL_REDUCE_TOKEN_MEAN, // a mean over the call's unmasked tokens
    name: c"is_weight_mean".as_ptr(),
    doc: c"mean truncated IS weight over unmasked tokens".as_ptr(),
}]);

static VTABLE: Shared<KeelObjectiveVtable> = Shared(KeelObjectiveVtable {
    struct_size: std::mem::size_of::<KeelObjectiveVtable>() as u32,
    flags: 0, // KEEL_OBJECTIVE_USES_REF if you read batch.logp_ref
    metric_count: 1,
    reserved0: 0,
    metrics: &METRICS.0 as *const [KeelScalarDecl; 1] as *const KeelScalarDecl,
    aggregation: c"seq-mean-token-sum".as_ptr(), // loss summed over tokens, divided by responses
    compute: Some(compute),
});

static DESCRIPTOR: Shared<KeelPlugin> = Shared(KeelPlugin {
    struct_size: std::mem::size_of::<KeelPlugin>() as u32,
    abi_major: KEEL_ABI_MAJOR, // the ABI this file mirrors
    abi_minor: KEEL_ABI_MINOR,
    kind: KEEL_KIND_OBJECTIVE,
    name: NAME.as_ptr(),
    version: c"0.1.0".as_ptr(),
    description: c"REINFORCE with truncated IS weight sg[min(pi/mu, cap)] against the sampler; seq-mean-token-sum (Rust template)".as_ptr(),
    param_count: 1,
    reserved0: 0,
    params: &PARAMS.0 as *const [KeelParamDecl; 1] as *const KeelParamDecl,
    create: Some(create),
    destroy: Some(destroy),
    get_extension: None,
    vtable: &VTABLE.0 as *const KeelObjectiveVtable as *const c_void,
    state_size: None,
    save_state: None,
    load_state: None,
});

/// The only exported symbol. Refuses (NULL) a host of another major or an older minor.
/// Returns the same pointer on every call; allocates nothing.
#[no_mangle]
#[allow(clippy::absurd_extreme_comparisons)] // `minor < 0` is always false at 1.0, not at 1.1
pub extern "C" fn keel_plugin_entry(host_abi_major: u32, host_abi_minor: u32) -> *const KeelPlugin {
    if host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < KEEL_ABI_MINOR {
        return std::ptr::null();
    }
    &DESCRIPTOR.0
}

// =============================================================================================
// Instances, errors and panics.
// =============================================================================================

/// Per-run state. Keep everything mutable here, never in statics: the host may create several
/// instances of this library with different parameters and call them from different threads.
struct Instance {
    host: *const KeelHost, // valid until destroy() returns; use it to report errors
    cap: f64,
}

/// Record `message` with host->error (the last call before a non-zero status wins).
fn report(host: *const KeelHost, message: &str) {
    if host.is_null() {
        return;
    }
    let text = format!("{}: {}", NAME.to_string_lossy(), message).replace('\0', " ");
    let c = CString::new(text).unwrap_or_default();
    // SAFETY: the host table is valid during any call of an instance it was given to.
    unsafe {
        if let Some(error) = (*host).error {
            error(host, c.as_ptr()); // the host copies the message before returning
        }
    }
}

/// Report and return a non-zero status: `return fail(host, KEEL_ERR_..., "why")`.
fn fail(host: *const KeelHost, status: KeelStatus, message: &str) -> KeelStatus {
    report(host, message);
    status
}

/// Run `body`, turning a panic into host->error + KEEL_ERR_INTERNAL, so no panic ever unwinds
/// across the C ABI (Cargo.toml keeps panic = "unwind" so that this can catch it). The
/// default panic hook also prints the panic to stderr.
fn guard(host: *const KeelHost, body: impl FnOnce() -> KeelStatus) -> KeelStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(status) => status,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_string());
            // Dropping a panic payload can itself panic; forget it instead.
            std::mem::forget(payload);
            fail(host, KEEL_ERR_INTERNAL, &format!("panicked: {what}"))
        }
    }
}

#[allow(clippy::neg_cmp_op_on_partial_ord)] // !(x >= y) is deliberate: it also rejects NaN
unsafe extern "C" fn create(
    host: *const KeelHost,
    params: *const KeelParams,
    out_instance: *mut *mut c_void,
) -> KeelStatus {
    if host.is_null() || out_instance.is_null() {
        return KEEL_ERR_INVALID_ARGUMENT; // nothing to report through
    }
    guard(host, || {
        // One value per declared parameter, in declaration order; match by name, and step by
        // each element's struct_size (the host's stride), never by our own size_of.
        let mut cap = 5.0; // the declared default
        if !params.is_null() && (*params).count > 0 && !(*params).values.is_null() {
            let mut at = (*params).values as *const u8;
            for _ in 0..(*params).count {
                // Read struct_size alone before trusting the rest of the element.
                let size = (*(at as *const KeelParamValue)).struct_size;
                if (size as usize) < std::mem::size_of::<KeelParamValue>() {
                    return fail(
                        host,
                        KEEL_ERR_INVALID_ARGUMENT,
                        &format!("malformed parameter value (struct_size {size})"),
                    );
                }
                let value = &*(at as *const KeelParamValue);
                let name = if value.name.is_null() {
                    c""
                } else {
                    CStr::from_ptr(value.name)
                };
                match name.to_bytes() {
                    b"cap" if value.r#type == KEEL_PARAM_FLOAT => cap = value.f,
                    _ => {
                        return fail(
                            host,
                            KEEL_ERR_INVALID_ARGUMENT,
                            &format!(
                                "unknown parameter '{}' (type {}); valid: cap (float)",
                                name.to_string_lossy(),
                                value.r#type
                            ),
                        )
                    }
                }
                at = at.add(size as usize);
            }
        }
        if !(cap >= 1e-9) {
            return fail(
                host,
                KEEL_ERR_INVALID_ARGUMENT,
                &format!("cap must be >= 1e-9, got {cap}"),
            );
        }
        *out_instance = Box::into_raw(Box::new(Instance { host, cap })) as *mut c_void;
        KEEL_OK
    })
}

unsafe extern "C" fn destroy(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // SAFETY: `instance` came from Box::into_raw in create() and is destroyed exactly once.
    let me = Box::from_raw(instance as *mut Instance);
    let host = me.host;
    let _ = guard(host, move || {
        drop(me);
        KEEL_OK
    });
}

// =============================================================================================
// The objective.
// =============================================================================================

unsafe extern "C" fn compute(
    instance: *mut c_void,
    batch: *const KeelObjectiveBatch,
    out: *mut KeelObjectiveOutput,
) -> KeelStatus {
    if instance.is_null() {
        return KEEL_ERR_INVALID_ARGUMENT;
    }
    let me = &*(instance as *const Instance);
    if batch.is_null() || out.is_null() {
        return fail(
            me.host,
            KEEL_ERR_INVALID_ARGUMENT,
            "batch or output is NULL",
        );
    }
    guard(me.host, || compute_batch(me, &*batch, &mut *out))
}

#[allow(clippy::neg_cmp_op_on_partial_ord)] // !(x > y) is deliberate: it also rejects NaN
unsafe fn compute_batch(
    me: &Instance,
    b: &KeelObjectiveBatch,
    out: &mut KeelObjectiveOutput,
) -> KeelStatus {
    let n = b.num_tokens;
    if n < 0 {
        return fail(
            me.host,
            KEEL_ERR_INVALID_ARGUMENT,
            &format!("num_tokens = {n} < 0"),
        );
    }
    let n = n as usize;
    let (mut loss, mut weight_sum, mut tokens) = (0.0f64, 0.0f64, 0.0f64);
    if n > 0 {
        if b.mask.is_null()
            || b.advantages.is_null()
            || b.logp.is_null()
            || b.logp_rollout.is_null()
            || out.grad_logp.is_null()
        {
            return fail(
                me.host,
                KEEL_ERR_INVALID_ARGUMENT,
                "a required token array is NULL",
            );
        }
        // Borrowed views, valid during this call only: keep no pointer into them.
        let mask = std::slice::from_raw_parts(b.mask, n);
        let adv = std::slice::from_raw_parts(b.advantages, n);
        let logp = std::slice::from_raw_parts(b.logp, n);
        let rollout = std::slice::from_raw_parts(b.logp_rollout, n);
        // Stop-gradient rule: differentiate through `logp` only. Anything the formula treats
        // as a constant (IS weights, ratios, clip masks, anything behind sg[.]) comes from
        // `frozen`, never from `logp`: the gradient checker keeps logp_frozen fixed and
        // perturbs logp. logp_frozen == NULL means "equal to logp" (ordinary training).
        let frozen = if b.logp_frozen.is_null() {
            logp
        } else {
            std::slice::from_raw_parts(b.logp_frozen, n)
        };
        let grad = std::slice::from_raw_parts_mut(out.grad_logp, n);
        // Normalise by the WHOLE optimizer-step batch (never by counts of this call): the host
        // may split one step into several calls and adds their losses and gradients.
        let s = b.total_sequences;

        for t in 0..n {
            grad[t] = 0.0; // masked tokens must get exactly 0
            if mask[t] == 0 {
                continue;
            }
            if !(logp[t].is_finite()
                && frozen[t].is_finite()
                && rollout[t].is_finite()
                && adv[t].is_finite())
            {
                return fail(me.host, KEEL_ERR_NUMERIC, &format!(
                    "non-finite input at token {t} (logp {}, logp_frozen {}, logp_rollout {}, advantage {})",
                    logp[t], frozen[t], rollout[t], adv[t]));
            }
            if !(s > 0.0) {
                return fail(
                    me.host,
                    KEEL_ERR_INVALID_ARGUMENT,
                    &format!("unmasked tokens but total_sequences = {s} (must be > 0)"),
                );
            }

            // ---- EDIT HERE: the per-token loss term and its derivative d(term)/d(logp[t]) ----
            let weight = (frozen[t] as f64 - rollout[t] as f64).exp().min(me.cap); // sg[min(π/μ, C)]
            let coefficient = -weight * adv[t] as f64 / s;
            loss += coefficient * logp[t] as f64;
            grad[t] = coefficient as f32;
            // ---- END EDIT HERE ----------------------------------------------------------------

            weight_sum += weight;
            tokens += 1.0;
        }
    }
    out.loss = loss;
    if out.metric_count >= 1 && !out.metrics.is_null() {
        // TOKEN_MEAN: a mean over this call's unmasked tokens (0 when there are none).
        *out.metrics = if tokens > 0.0 {
            weight_sum / tokens
        } else {
            0.0
        };
    }
    KEEL_OK
}
