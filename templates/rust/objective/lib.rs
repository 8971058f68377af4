//! lib.rs — objective "keel-template-objective", a Rust starting point for a Keel objective
//! plugin (ABI 1.1). The same objective, with the same parameters and the same arithmetic, is
//! in templates/c/objective/plugin.c and templates/swift/objective/Plugin.swift.
//!
//! Formula (EDIT HERE, in `compute_batch` below): PPO's clipped surrogate, token-mean, with an
//! optional entropy bonus, as a loss to MINIMISE (T = total_tokens of the whole step):
//!     L    = (1/T) Σ_t m_t ℓ_t − entropy_coef · (1/T) Σ_t m_t H_t
//!     ℓ_t  = max(−A_t r_t, −A_t clip(r_t, 1 − eps, 1 + eps)),  r_t = exp(logp_t − base_t)
//!     base_t = logp_old_t (ratio_to = "old") or logp_rollout_t (ratio_to = "rollout")
//! Stop-gradients: the branch is a constant, decided from ρ_t = exp(frozen_t − base_t)
//! (frozen = logp_frozen, or logp when NULL): A > 0 and ρ > 1 + eps, or A < 0 and ρ < 1 − eps
//! → clipped, ℓ_t = −A_t(1 ± eps), ∂ℓ_t/∂logp_t = 0; otherwise ℓ_t = −A_t r_t with r_t from
//! logp (live), ∂ℓ_t/∂logp_t = −A_t r_t.
//!     grad_logp[t] = m_t ∂ℓ_t/∂logp_t / T;  grad_entropy[t] = −m_t entropy_coef / T (coef > 0)
//! Arithmetic (as the C and Swift templates, so all three agree bit for bit): f64 sums
//! pg = Σ ℓ_t and hs = Σ H_t in token order, L = pg / T, then L − entropy_coef · (hs / T).
//! Equals verl's vanilla policy loss (token-mean, clip_ratio = eps, no dual clip) minus
//! entropy_coeff · token-mean(entropy) (verl/workers/actor/dp_actor.py).
//!
//! Parameters: `eps` FLOAT [0, 1] = 0.2; `entropy_coef` FLOAT >= 0 = 0 (> 0: create() asks the
//! host for the per-token entropy through keel_params.instance_flags, ABI 1.1); `ratio_to`
//! STRING "old" | "rollout" = "old" (declared with `choices`, ABI 1.1). One metric
//! `clip_fraction` (TOKEN_MEAN); aggregation "token-mean". A NaN/Inf input on an unmasked
//! token, or a non-finite loss or gradient, is KEEL_ERR_NUMERIC; a missing array, unmasked
//! tokens with total_tokens <= 0, or entropy_coef > 0 without an entropy array is
//! KEEL_ERR_INVALID_ARGUMENT; entropy_coef > 0 on a host without per-instance flags is
//! KEEL_ERR_UNSUPPORTED.
//!
//! Rules this file keeps (docs/abi.md): the only exported symbol is `keel_plugin_entry`; the
//! descriptor, decls and strings are immutable statics; all per-run state lives in the
//! instance (Box, create/destroy); no mutable globals; a panic never unwinds into the host
//! (see `guard`). Build: `make` → ./libkeel-template-objective.so; then
//! `keel plugins check ./libkeel-template-objective.so`.

use core::ffi::{c_char, c_void, CStr};
use std::ffi::CString;
use std::mem::{offset_of, size_of};
use std::panic::{catch_unwind, AssertUnwindSafe};

// =============================================================================================
// ABI mirror. keel/keel_plugin.h (`keel plugins include-dir`) is THE source of truth: these
// #[repr(C)] structs copy exactly the parts of it this plugin uses, field for field, in the
// header's order and with the header's types. If they ever disagree, the header wins and this
// file is wrong. The size asserts below pin the LP64 sizes at ABI 1.1.
// Nullable C function pointers are Option<extern "C" fn> (same size and layout, NULL = None).
// =============================================================================================

pub const KEEL_ABI_MAJOR: u32 = 1;
pub const KEEL_ABI_MINOR: u32 = 1;

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
pub const KEEL_OBJECTIVE_USES_ENTROPY: u32 = 2; // 1.1
pub const KEEL_OBJECTIVE_USES_REF_KL: u32 = 4; // 1.1
pub const KEEL_OBJECTIVE_USES_TEACHER: u32 = 8; // 1.1
pub const KEEL_OBJECTIVE_USES_TEACHER_KL: u32 = 16; // 1.1
pub const KEEL_OBJECTIVE_USES_LOGITS: u32 = 32; // 1.1

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
    /// 1.1, STRING only: NULL-terminated array of the allowed values, or NULL (any string).
    pub choices: *const *const c_char,
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
    /// 1.1 (present when struct_size covers it): this instance's KEEL_OBJECTIVE_USES_* bits,
    /// host-owned; create() may overwrite it.
    pub instance_flags: *mut u32,
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
    pub logp_ref: *const f32, // NULL unless the instance's flags have KEEL_OBJECTIVE_USES_REF
    pub total_sequences: f64,
    pub total_tokens: f64,
    pub max_response_tokens: i64,
    // ---- 1.1: read only when struct_size covers them; each NULL unless the flags ask.
    pub entropy: *const f32, // [num_tokens] H(π_θ(·|prefix)) (USES_ENTROPY)
    pub kl_ref: *const f32,  // [num_tokens] KL(π_θ ‖ π_ref) (USES_REF_KL)
    pub logp_teacher: *const f32, // [num_tokens] (USES_TEACHER)
    pub kl_teacher: *const f32, // [num_tokens] KL(π_θ ‖ π_teacher) (USES_TEACHER_KL)
    pub vocab_size: i64,     // V
    pub logits: *const f32,  // [num_tokens * vocab_size] (USES_LOGITS)
}

/// keel_objective_output: host-allocated outputs of one compute call.
#[repr(C)]
pub struct KeelObjectiveOutput {
    pub struct_size: u32,
    pub metric_count: u32,
    pub loss: f64,
    pub grad_logp: *mut f32, // [num_tokens], host-zeroed
    pub metrics: *mut f64,   // [metric_count]
    // ---- 1.1: present when struct_size covers them; NULL exactly when the input is NULL.
    pub grad_entropy: *mut f32,    // [num_tokens] ∂loss/∂entropy
    pub grad_kl_ref: *mut f32,     // [num_tokens] ∂loss/∂kl_ref
    pub grad_kl_teacher: *mut f32, // [num_tokens] ∂loss/∂kl_teacher
    pub grad_logits: *mut f32,     // [num_tokens * vocab_size] ∂loss/∂logits
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
pub type KeelGetInstanceExtensionFn =
    unsafe extern "C" fn(instance: *mut c_void, extension_id: *const c_char) -> *const c_void;

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
    pub get_instance_extension: Option<KeelGetInstanceExtensionFn>, // 1.1, optional
}

// LP64 sizes at ABI 1.1 (sizeof in C). A mismatch fails the build, not the run.
const _: () = assert!(size_of::<KeelHost>() == 40);
const _: () = assert!(size_of::<KeelParamDecl>() == 72);
const _: () = assert!(size_of::<KeelParamValue>() == 40);
const _: () = assert!(size_of::<KeelParams>() == 24);
const _: () = assert!(size_of::<KeelScalarDecl>() == 24);
const _: () = assert!(size_of::<KeelObjectiveBatch>() == 168);
const _: () = assert!(size_of::<KeelObjectiveOutput>() == 64);
const _: () = assert!(size_of::<KeelObjectiveVtable>() == 40);
const _: () = assert!(size_of::<KeelPlugin>() == 120);
// A few offsets too: a dropped or swapped field of a different size shows up here.
const _: () = assert!(offset_of!(KeelHost, error) == 32);
const _: () = assert!(offset_of!(KeelParamDecl, choices) == 64);
const _: () = assert!(offset_of!(KeelParams, instance_flags) == 16);
const _: () = assert!(offset_of!(KeelObjectiveBatch, logp_rollout) == 80);
const _: () = assert!(offset_of!(KeelObjectiveBatch, total_sequences) == 96);
const _: () = assert!(offset_of!(KeelObjectiveBatch, entropy) == 120);
const _: () = assert!(offset_of!(KeelObjectiveBatch, vocab_size) == 152);
const _: () = assert!(offset_of!(KeelObjectiveBatch, logits) == 160);
const _: () = assert!(offset_of!(KeelObjectiveOutput, metrics) == 24);
const _: () = assert!(offset_of!(KeelObjectiveOutput, grad_entropy) == 32);
const _: () = assert!(offset_of!(KeelObjectiveOutput, grad_logits) == 56);
const _: () = assert!(offset_of!(KeelObjectiveVtable, compute) == 32);
const _: () = assert!(offset_of!(KeelPlugin, params) == 48);
const _: () = assert!(offset_of!(KeelPlugin, vtable) == 80);
const _: () = assert!(offset_of!(KeelPlugin, get_instance_extension) == 112);

/// Does a host struct whose `struct_size` is `size` contain the field that starts at `offset`
/// and is `len` bytes long? (A reader checks struct_size before reading a field appended
/// after 1.0: an older host's struct ends before it.)
const fn covers(size: u32, offset: usize, len: usize) -> bool {
    size as usize >= offset + len
}

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

/// `ratio_to`'s allowed values (ABI 1.1 `choices`, NULL-terminated). The host refuses any
/// other value before create(); create() checks again (another host may not).
static RATIO_TO_CHOICES: Shared<[*const c_char; 3]> =
    Shared([c"old".as_ptr(), c"rollout".as_ptr(), std::ptr::null()]);

static PARAMS: Shared<[KeelParamDecl; 3]> = Shared([
    KeelParamDecl {
        struct_size: size_of::<KeelParamDecl>() as u32,
        r#type: KEEL_PARAM_FLOAT,
        name: c"eps".as_ptr(),
        doc: c"clip range: the ratio is clipped to [1 - eps, 1 + eps]".as_ptr(),
        default_f: 0.2,
        default_i: 0,
        default_s: c"".as_ptr(),
        min_value: 0.0,
        max_value: 1.0,
        choices: std::ptr::null(),
    },
    KeelParamDecl {
        struct_size: size_of::<KeelParamDecl>() as u32,
        r#type: KEEL_PARAM_FLOAT,
        name: c"entropy_coef".as_ptr(),
        doc: c"weight of the token-mean entropy bonus (0 = off; > 0 asks the host for the entropy)"
            .as_ptr(),
        default_f: 0.0,
        default_i: 0,
        default_s: c"".as_ptr(),
        min_value: 0.0,
        max_value: f64::INFINITY,
        choices: std::ptr::null(),
    },
    KeelParamDecl {
        struct_size: size_of::<KeelParamDecl>() as u32,
        r#type: KEEL_PARAM_STRING,
        name: c"ratio_to".as_ptr(),
        doc: c"the ratio's denominator: old = logp_old (PPO's pi_old), rollout = logp_rollout (sampler)"
            .as_ptr(),
        default_f: 0.0,
        default_i: 0,
        default_s: c"old".as_ptr(),
        min_value: 0.0,
        max_value: 0.0,
        choices: &RATIO_TO_CHOICES.0 as *const [*const c_char; 3] as *const *const c_char,
    },
]);

static METRICS: Shared<[KeelScalarDecl; 1]> = Shared([KeelScalarDecl {
    struct_size: size_of::<KeelScalarDecl>() as u32,
    reduction: KEEL_REDUCE_TOKEN_MEAN, // a mean over the call's unmasked tokens
    name: c"clip_fraction".as_ptr(),
    doc: c"fraction of unmasked tokens whose clipped branch is active".as_ptr(),
}]);

static VTABLE: Shared<KeelObjectiveVtable> = Shared(KeelObjectiveVtable {
    struct_size: size_of::<KeelObjectiveVtable>() as u32,
    flags: 0, // static needs; this template writes them per instance in create()
    metric_count: 1,
    reserved0: 0,
    metrics: &METRICS.0 as *const [KeelScalarDecl; 1] as *const KeelScalarDecl,
    aggregation: c"token-mean".as_ptr(), // loss summed over tokens, divided by the step's tokens
    compute: Some(compute),
});

static DESCRIPTOR: Shared<KeelPlugin> = Shared(KeelPlugin {
    struct_size: size_of::<KeelPlugin>() as u32,
    abi_major: KEEL_ABI_MAJOR, // the ABI this file mirrors
    abi_minor: KEEL_ABI_MINOR,
    kind: KEEL_KIND_OBJECTIVE,
    name: NAME.as_ptr(),
    version: c"0.1.0".as_ptr(),
    description: c"PPO clip max(-A r, -A clip(r, 1-eps, 1+eps)) with an optional entropy bonus, token-mean; verl vanilla policy loss (token-mean, entropy_coeff) (Rust template)".as_ptr(),
    param_count: 3,
    reserved0: 0,
    params: &PARAMS.0 as *const [KeelParamDecl; 3] as *const KeelParamDecl,
    create: Some(create),
    destroy: Some(destroy),
    get_extension: None,
    vtable: &VTABLE.0 as *const KeelObjectiveVtable as *const c_void,
    state_size: None,
    save_state: None,
    load_state: None,
    get_instance_extension: None,
});

/// The only exported symbol. The ABI check: refuses (NULL) a host of another major, or of an
/// older minor than the one these mirrors copy (its structs may lack fields we read).
/// Returns the same pointer on every call; allocates nothing.
#[no_mangle]
#[allow(clippy::absurd_extreme_comparisons)] // `minor < 0` would always be false at x.0
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
    eps: f64,
    entropy_coef: f64,
    ratio_to_rollout: bool, // false: base = logp_old, true: base = logp_rollout
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
        // each element's struct_size (the host's stride, ABI rule 4.4), never by our size_of.
        let (mut eps, mut entropy_coef) = (0.2f64, 0.0f64); // the declared defaults
        let mut ratio_to: Vec<u8> = b"old".to_vec(); // a copy: `s` is valid during create only
        if !params.is_null() && (*params).count > 0 {
            if (*params).values.is_null() {
                return fail(host, KEEL_ERR_INVALID_ARGUMENT, "parameter values are NULL");
            }
            let mut at = (*params).values as *const u8;
            for _ in 0..(*params).count {
                // Read struct_size alone before trusting the rest of the element.
                let size = (*(at as *const KeelParamValue)).struct_size;
                if (size as usize) < size_of::<KeelParamValue>() {
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
                    b"eps" if value.r#type == KEEL_PARAM_FLOAT => eps = value.f,
                    b"entropy_coef" if value.r#type == KEEL_PARAM_FLOAT => entropy_coef = value.f,
                    b"ratio_to" if value.r#type == KEEL_PARAM_STRING => {
                        ratio_to = if value.s.is_null() {
                            Vec::new()
                        } else {
                            CStr::from_ptr(value.s).to_bytes().to_vec()
                        }
                    }
                    _ => {
                        return fail(
                            host,
                            KEEL_ERR_INVALID_ARGUMENT,
                            &format!(
                                "unknown parameter '{}' (type {}); valid: eps (float), entropy_coef (float), ratio_to (string)",
                                name.to_string_lossy(),
                                value.r#type
                            ),
                        )
                    }
                }
                at = at.add(size as usize);
            }
        }
        // The host validated ranges and choices against the declarations; check again anyway.
        // (contains and >= are false for NaN, so a NaN is rejected too)
        let valid = (0.0..=1.0).contains(&eps) && entropy_coef >= 0.0 && entropy_coef.is_finite();
        if !valid {
            return fail(
                host,
                KEEL_ERR_INVALID_ARGUMENT,
                &format!("eps = {eps} must be in [0, 1] and entropy_coef = {entropy_coef} finite and >= 0"),
            );
        }
        let ratio_to_rollout = match ratio_to.as_slice() {
            b"old" => false,
            b"rollout" => true,
            other => {
                return fail(
                    host,
                    KEEL_ERR_INVALID_ARGUMENT,
                    &format!(
                        "parameter 'ratio_to' = '{}' is not one of old, rollout",
                        String::from_utf8_lossy(other)
                    ),
                )
            }
        };
        // This instance's needs (ABI 1.1): the host supplies batch.entropy (and grad_entropy)
        // only when create() sets KEEL_OBJECTIVE_USES_ENTROPY here. The slot exists only when
        // struct_size covers it: a 1.0 host has none and supplies no entropy, so refuse.
        let flags = if entropy_coef > 0.0 {
            KEEL_OBJECTIVE_USES_ENTROPY
        } else {
            0
        };
        let slot = if !params.is_null()
            && covers(
                (*params).struct_size,
                offset_of!(KeelParams, instance_flags),
                size_of::<*mut u32>(),
            ) {
            (*params).instance_flags
        } else {
            std::ptr::null_mut()
        };
        if !slot.is_null() {
            *slot = flags;
        } else if flags != 0 {
            return fail(
                host,
                KEEL_ERR_UNSUPPORTED,
                "entropy_coef > 0 needs a host with per-instance flags (ABI >= 1.1)",
            );
        }
        let instance = Instance {
            host,
            eps,
            entropy_coef,
            ratio_to_rollout,
        };
        *out_instance = Box::into_raw(Box::new(instance)) as *mut c_void;
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
    out.loss = 0.0;
    if out.metric_count >= 1 && !out.metrics.is_null() {
        *out.metrics = 0.0;
    }
    let n = b.num_tokens;
    if n < 0 {
        return fail(
            me.host,
            KEEL_ERR_INVALID_ARGUMENT,
            &format!("num_tokens = {n} < 0"),
        );
    }
    if n == 0 {
        return KEEL_OK; // an empty call: loss 0
    }
    let n = n as usize;
    let base_ptr = if me.ratio_to_rollout {
        b.logp_rollout
    } else {
        b.logp_old
    };
    if b.mask.is_null()
        || b.advantages.is_null()
        || b.logp.is_null()
        || base_ptr.is_null()
        || out.grad_logp.is_null()
    {
        return fail(
            me.host,
            KEEL_ERR_INVALID_ARGUMENT,
            "a required token array is NULL",
        );
    }
    // ABI 1.1 fields: read them only when the host's struct_size covers them.
    let use_entropy = me.entropy_coef > 0.0;
    let (mut entropy_ptr, mut grad_entropy_ptr) = (std::ptr::null(), std::ptr::null_mut());
    if use_entropy {
        if covers(
            b.struct_size,
            offset_of!(KeelObjectiveBatch, entropy),
            size_of::<*const f32>(),
        ) {
            entropy_ptr = b.entropy;
        }
        if covers(
            out.struct_size,
            offset_of!(KeelObjectiveOutput, grad_entropy),
            size_of::<*mut f32>(),
        ) {
            grad_entropy_ptr = out.grad_entropy;
        }
        if entropy_ptr.is_null() || grad_entropy_ptr.is_null() {
            return fail(
                me.host,
                KEEL_ERR_INVALID_ARGUMENT,
                "entropy_coef > 0 but the host gave no entropy / grad_entropy",
            );
        }
    }
    // Borrowed views, valid during this call only: keep no pointer into them.
    let mask = std::slice::from_raw_parts(b.mask, n);
    let adv = std::slice::from_raw_parts(b.advantages, n);
    let logp = std::slice::from_raw_parts(b.logp, n);
    let base = std::slice::from_raw_parts(base_ptr, n);
    // Stop-gradient rule: differentiate through `logp` only. Anything the formula treats as a
    // constant (IS weights, ratios, clip decisions, anything behind sg[.]) comes from `frozen`,
    // never from `logp`: the gradient checker keeps logp_frozen fixed and perturbs logp.
    // logp_frozen == NULL means "equal to logp" (ordinary training).
    let frozen = if b.logp_frozen.is_null() {
        logp
    } else {
        std::slice::from_raw_parts(b.logp_frozen, n)
    };
    let entropy: &[f32] = if use_entropy {
        std::slice::from_raw_parts(entropy_ptr, n)
    } else {
        &[]
    };
    let grad_entropy: &mut [f32] = if use_entropy {
        std::slice::from_raw_parts_mut(grad_entropy_ptr, n)
    } else {
        &mut []
    };
    let grad = std::slice::from_raw_parts_mut(out.grad_logp, n);
    // Normalise by the WHOLE optimizer-step batch (never by counts of this call): the host may
    // split one step into several calls and adds their losses and gradients.
    let total = b.total_tokens;
    let eps = me.eps;
    let (mut pg, mut hs) = (0.0f64, 0.0f64);
    let (mut unmasked, mut clipped) = (0u64, 0u64);

    for t in 0..n {
        if mask[t] == 0 {
            grad[t] = 0.0; // masked tokens must get exactly 0
            if use_entropy {
                grad_entropy[t] = 0.0;
            }
            continue;
        }
        let lp = logp[t] as f64;
        let fz = frozen[t] as f64;
        let bt = base[t] as f64;
        let a = adv[t] as f64;
        let h = if use_entropy { entropy[t] as f64 } else { 0.0 };
        if !(lp.is_finite() && fz.is_finite() && bt.is_finite() && a.is_finite() && h.is_finite()) {
            return fail(
                me.host,
                KEEL_ERR_NUMERIC,
                &format!("non-finite input at token {t}"),
            );
        }
        if !(total > 0.0) {
            return fail(
                me.host,
                KEEL_ERR_INVALID_ARGUMENT,
                &format!("unmasked tokens but total_tokens = {total} (must be > 0)"),
            );
        }

        // ---- EDIT HERE: the per-token loss term ℓ_t (`term`) and dℓ_t/dlogp_t (`slope`) -----
        let rho = (fz - bt).exp(); // sg[r_t]: decides the branch, carries no gradient
        let (term, slope);
        if (a > 0.0 && rho > 1.0 + eps) || (a < 0.0 && rho < 1.0 - eps) {
            term = -a * (if a > 0.0 { 1.0 + eps } else { 1.0 - eps }); // clipped: a constant
            slope = 0.0;
            clipped += 1;
        } else {
            let r = (lp - bt).exp(); // the live ratio
            term = -a * r;
            slope = -a * r;
        }
        // ---- END EDIT HERE ------------------------------------------------------------------

        pg += term;
        let g = (slope / total) as f32;
        if !g.is_finite() {
            return fail(
                me.host,
                KEEL_ERR_NUMERIC,
                &format!("gradient at token {t} is not finite (ratio overflow)"),
            );
        }
        grad[t] = g;
        if use_entropy {
            hs += h;
            grad_entropy[t] = (-me.entropy_coef / total) as f32;
        }
        unmasked += 1;
    }
    let mut loss = if unmasked > 0 { pg / total } else { 0.0 };
    if use_entropy && unmasked > 0 {
        loss -= me.entropy_coef * (hs / total);
    }
    if !loss.is_finite() {
        return fail(
            me.host,
            KEEL_ERR_NUMERIC,
            "the loss is not finite (ratio overflow)",
        );
    }
    out.loss = loss;
    if out.metric_count >= 1 && !out.metrics.is_null() {
        // TOKEN_MEAN: a mean over this call's unmasked tokens (0 when there are none).
        *out.metrics = if unmasked > 0 {
            clipped as f64 / unmasked as f64
        } else {
            0.0
        };
    }
    KEEL_OK
}
