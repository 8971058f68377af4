/*
 * keel/keel_plugin.h — the Keel plugin ABI, version 1.1. THE source of truth.
 *
 * A Keel plugin is a shared library that exports exactly one function,
 * `keel_plugin_entry`, returning a descriptor (`keel_plugin`) of one of three kinds:
 *   objective — per-token loss and its gradient with respect to log π_θ,
 *   reward    — one score per sampled response,
 *   baseline  — one advantage per response from the rewards of the batch.
 * The host (the `keel` executable) loads it with dlopen(RTLD_NOW|RTLD_LOCAL|RTLD_NODELETE)
 * and never unloads it. docs/abi.md states the same rules as a numbered list.
 *
 * Conventions (apply to everything below):
 *  - C11, depends only on <stdint.h> and <stddef.h>. No Swift, C++ or Rust type crosses.
 *  - Every struct that crosses begins with `uint32_t struct_size` = sizeof the struct as
 *    the writer compiled it. Fields are only ever appended; a reader checks struct_size
 *    before reading a field added after 1.0.
 *  - Enums cross as fixed-width integers (the typedefs below), never as C `enum` types.
 *  - Status: int32_t, KEEL_OK (0) is success. On failure the plugin calls
 *    host->error(host, "message") first, then returns the non-zero status.
 *  - Memory: whoever allocates frees. Inputs are borrowed views valid only during the call;
 *    outputs go into buffers the host allocated and sized. Strings are UTF-8, NUL-terminated.
 *  - Threads: the host never calls two functions of one instance at the same time; different
 *    instances (of the same or of different libraries) may be called concurrently from
 *    different threads. No call relies on thread-local state of a particular thread.
 *  - Per-run state lives in instances (create/destroy); a plugin keeps no mutable globals
 *    (the same library may back several instances with different parameters).
 *  - Every function pointer carries a contract line, CLAP-style:
 *      [thread] who may call it and from where   [when] when the host calls it
 *      [keeps]  what the callee may keep after returning   [never] what it must never do
 *  - 1.1 appended: distribution terms and full logits for objectives (keel_objective_batch /
 *    keel_objective_output), per-instance needs written by create (keel_params.instance_flags),
 *    `choices` on string parameters, get_instance_extension. A 1.0 plugin never sees them.
 */
#ifndef KEEL_PLUGIN_H
#define KEEL_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Versions --------------------------------------------------------------------------
 * Major: bumped on any incompatible change (never within 1.x).
 * Minor: bumped when fields or extensions are appended. A host of version H.h loads a
 * plugin of version P.p iff P == H and p <= h. */
#define KEEL_ABI_MAJOR 1
#define KEEL_ABI_MINOR 1

#if defined(_WIN32)
#define KEEL_EXPORT __declspec(dllexport)
#else
#define KEEL_EXPORT __attribute__((visibility("default")))
#endif

/* ---- Status codes ---------------------------------------------------------------------- */
typedef int32_t keel_status;
#define KEEL_OK 0
#define KEEL_ERR_INVALID_ARGUMENT 1 /* bad parameter value or malformed batch */
#define KEEL_ERR_NUMERIC 2          /* NaN/Inf input or a result that cannot be finite */
#define KEEL_ERR_UNSUPPORTED 3      /* a feature the plugin does not implement */
#define KEEL_ERR_STATE 4            /* a saved state blob that does not fit this plugin */
#define KEEL_ERR_INTERNAL 5         /* anything else (allocation failure, bug) */

/* ---- Kinds ----------------------------------------------------------------------------- */
typedef uint32_t keel_kind;
#define KEEL_KIND_OBJECTIVE 1u
#define KEEL_KIND_REWARD 2u
#define KEEL_KIND_BASELINE 3u

/* ---- Log levels ------------------------------------------------------------------------ */
typedef uint32_t keel_log_level;
#define KEEL_LOG_DEBUG 0u
#define KEEL_LOG_INFO 1u
#define KEEL_LOG_WARNING 2u
#define KEEL_LOG_ERROR 3u

/* ---- The host table ----------------------------------------------------------------------
 * Given to create(). Owned by the host; valid until destroy() of the instance returns.
 * The host gives every instance its own table, so messages are attributed to the instance. */
typedef struct keel_host {
  uint32_t struct_size;
  uint32_t abi_major; /* the host's KEEL_ABI_MAJOR */
  uint32_t abi_minor; /* the host's KEEL_ABI_MINOR */
  uint32_t reserved0;
  void *context; /* host-private; pass the table back unchanged */
  /* Log a line.
   * [thread] the plugin, from inside any of its calls, on the calling thread
   * [when] any time during a call   [keeps] the host copies `message` before returning
   * [never] call it from a thread the plugin started, or after destroy() */
  void (*log)(const struct keel_host *host, keel_log_level level, const char *message);
  /* Record why the current call fails; the host shows it with the plugin's path and name.
   * [thread] as log   [when] before returning a non-zero status; the last call wins
   * [keeps] copied by the host   [never] as log */
  void (*error)(const struct keel_host *host, const char *message);
} keel_host;

/* ---- Parameters --------------------------------------------------------------------------
 * A plugin declares its parameters; the host validates a run's config against them (unknown
 * name, wrong type and out-of-range value are host errors naming the parameter) and passes
 * to create() one value per declared parameter, in declaration order, defaults filled in. */
typedef uint32_t keel_param_type;
#define KEEL_PARAM_FLOAT 1u  /* double in `f` */
#define KEEL_PARAM_INT 2u    /* int64 in `i` */
#define KEEL_PARAM_BOOL 3u   /* 0 or 1 in `i` */
#define KEEL_PARAM_STRING 4u /* UTF-8 in `s` */

typedef struct keel_param_decl {
  uint32_t struct_size;
  keel_param_type type;
  const char *name; /* [a-z0-9_]+, unique within the plugin */
  const char *doc;  /* one line */
  double default_f; /* default for FLOAT */
  int64_t default_i; /* default for INT and BOOL */
  const char *default_s; /* default for STRING (may be "") */
  double min_value; /* inclusive bounds for FLOAT and INT; use -HUGE_VAL/HUGE_VAL for none */
  double max_value;
  /* 1.1, STRING only, optional: the allowed values as a NULL-terminated array (NULL = any
   * string). The host refuses any other value before create(), naming the parameter and
   * listing these; the default must be one of them. Static storage, like the rest. */
  const char *const *choices;
} keel_param_decl;

typedef struct keel_param_value {
  uint32_t struct_size;
  keel_param_type type;
  const char *name; /* the declared name */
  double f;
  int64_t i;
  const char *s; /* borrowed: valid during create() only, copy what you keep */
} keel_param_value;

typedef struct keel_params {
  uint32_t struct_size;
  uint32_t count; /* == the descriptor's param_count */
  const keel_param_value *values; /* [count], stride values[0].struct_size (rule 4.4) */
  /* 1.1 (present when struct_size covers it): the instance's needs, host-owned. On entry to
   * create() it holds the objective vtable's static `flags` (0 for other kinds); an objective's
   * create() may overwrite it with this instance's KEEL_OBJECTIVE_USES_* bits. The host reads
   * it once, after create() returns, and supplies exactly those inputs to every call. */
  uint32_t *instance_flags;
} keel_params;

/* ---- Named scalars (objective metrics, reward components) -------------------------------
 * `reduction` tells the host how to merge values from several calls (micro-batches,
 * mini-batches, processes):
 *   TOKEN_MEAN     the value is a mean over the call's unmasked tokens: merged weighted by them;
 *   SEQUENCE_MEAN  a mean over the call's responses: merged weighted by their number;
 *   SUM            additive: merged by summing. */
typedef uint32_t keel_reduction;
#define KEEL_REDUCE_TOKEN_MEAN 1u
#define KEEL_REDUCE_SEQUENCE_MEAN 2u
#define KEEL_REDUCE_SUM 3u

typedef struct keel_scalar_decl {
  uint32_t struct_size;
  keel_reduction reduction;
  const char *name; /* [a-z0-9_]+ */
  const char *doc;
} keel_scalar_decl;

/* ---- Objective ---------------------------------------------------------------------------
 * A packed batch of responses. Token arrays have num_tokens entries; response i owns tokens
 * [seq_offsets[i], seq_offsets[i+1]). All log-probs are natural-log probabilities of the
 * sampled token (<= 0).
 *
 * Stop-gradients are explicit: every quantity an objective treats as a constant (IS weights,
 * masks, clip decisions, sequence ratios behind sg[.]) is computed from `logp_frozen`; the
 * loss is differentiated through `logp` only. logp_frozen == NULL means "equal to logp"
 * (training). A gradient checker passes logp_frozen fixed and perturbs logp alone.
 *
 * Normalisers are explicit: total_sequences and total_tokens count the responses and the
 * unmasked tokens of the WHOLE optimizer-step batch, which the host may split into several
 * calls. An objective divides by these (never by counts of the call), so the loss and the
 * gradient are additive over calls. The host keeps each group (same group_id) in one call. */
typedef struct keel_objective_batch {
  uint32_t struct_size;
  uint32_t reserved0;
  int64_t num_sequences;        /* responses in this call (may be 0) */
  int64_t num_tokens;           /* == seq_offsets[num_sequences] */
  const int64_t *seq_offsets;   /* [num_sequences + 1], seq_offsets[0] == 0, non-decreasing */
  const int64_t *group_ids;     /* [num_sequences] prompt group of each response */
  const uint8_t *mask;          /* [num_tokens] 1 = token is in the loss, 0 = ignored */
  const float *advantages;      /* [num_tokens] Â per token (baselines broadcast per response) */
  const float *logp;            /* [num_tokens] log π_θ — differentiate through this */
  const float *logp_frozen;     /* [num_tokens] or NULL (= logp): constants come from here */
  const float *logp_old;        /* [num_tokens] log π_old (training engine, θ_old) */
  const float *logp_rollout;    /* [num_tokens] log μ_old (sampler / inference engine) */
  const float *logp_ref;        /* [num_tokens] frozen reference policy, or NULL if none */
  double total_sequences;       /* responses in the optimizer-step batch (>= num_sequences) */
  double total_tokens;          /* unmasked tokens in the optimizer-step batch */
  int64_t max_response_tokens;  /* the sampler's max_tokens (a constant for Dr.GRPO-style norms) */
  /* ---- 1.1: distribution terms (read only when struct_size covers them). Each is NULL
   * unless the instance's flags ask for it. All are per scored token, of the distribution
   * that predicts it, at the training (= sampling) temperature T, computed by the host over
   * the whole vocabulary in float32 from this call's forward: values, not functions — the
   * plugin returns ∂loss/∂(term) in the matching output slot and the host chains it through
   * the model's backward. Like logp, a term is "live" (differentiated); a constant derived
   * from it (a mask, a top-k choice) is treated as such by the plugin. */
  const float *entropy;      /* [num_tokens] H(π_θ(·|prefix)) = -Σ_v p_v log p_v (USES_ENTROPY) */
  const float *kl_ref;       /* [num_tokens] KL(π_θ ‖ π_ref) = Σ_v p_v (log p_v - log q_v),
                                full vocabulary (USES_REF_KL; needs train.kl_ref) */
  const float *logp_teacher; /* [num_tokens] log π_teacher(token), frozen (USES_TEACHER;
                                needs train.teacher) */
  const float *kl_teacher;   /* [num_tokens] KL(π_θ ‖ π_teacher), full vocabulary
                                (USES_TEACHER_KL; needs train.teacher) */
  int64_t vocab_size;        /* V: set by the training host; 0 when unknown (keel plugins
                                eval/check of a batch without logits) */
  const float *logits;       /* [num_tokens * vocab_size] z = logits / T of π_θ, row per token,
                                so softmax(z) = π_θ(·|prefix) (USES_LOGITS); borrowed */
} keel_objective_batch;

typedef struct keel_objective_output {
  uint32_t struct_size;
  uint32_t metric_count; /* slots in `metrics` == the vtable's metric_count */
  double loss;           /* out: this call's share of the loss (to MINIMISE) */
  float *grad_logp;      /* [num_tokens] out: ∂loss/∂logp; host-zeroed, plugin overwrites.
                            Masked tokens must get 0. */
  double *metrics;       /* [metric_count] out: one value per declared metric */
  /* ---- 1.1 (present when struct_size covers them): gradients of the distribution terms,
   * host-zeroed, NULL exactly when the matching input is NULL. Masked tokens must get 0. */
  float *grad_entropy;    /* [num_tokens] out: ∂loss/∂entropy */
  float *grad_kl_ref;     /* [num_tokens] out: ∂loss/∂kl_ref */
  float *grad_kl_teacher; /* [num_tokens] out: ∂loss/∂kl_teacher */
  float *grad_logits;     /* [num_tokens * vocab_size] out: ∂loss/∂z (z = logits / T) */
} keel_objective_output;

/* Objective needs: the vtable's static `flags`, or (1.1) per instance, written by create()
 * into keel_params.instance_flags. The host supplies an input only when its bit is set. */
#define KEEL_OBJECTIVE_USES_REF 1u        /* logp_ref (train.kl_ref)                        */
#define KEEL_OBJECTIVE_USES_ENTROPY 2u    /* 1.1: entropy, grad_entropy                      */
#define KEEL_OBJECTIVE_USES_REF_KL 4u     /* 1.1: kl_ref, grad_kl_ref (train.kl_ref)         */
#define KEEL_OBJECTIVE_USES_TEACHER 8u    /* 1.1: logp_teacher (train.teacher)               */
#define KEEL_OBJECTIVE_USES_TEACHER_KL 16u /* 1.1: kl_teacher, grad_kl_teacher (train.teacher) */
#define KEEL_OBJECTIVE_USES_LOGITS 32u    /* 1.1: logits, grad_logits                         */

typedef struct keel_objective_vtable {
  uint32_t struct_size;
  uint32_t flags;
  uint32_t metric_count;
  uint32_t reserved0;
  const keel_scalar_decl *metrics;
  const char *aggregation; /* e.g. "seq-mean-token-sum": how the loss is normalised */
  /* Loss, gradients and metrics for one call (one micro-batch).
   * [thread] any host thread; never two calls of one instance at once
   * [when] once per micro-batch of every update, and by `keel plugins eval/check`
   * [keeps] nothing: no pointer into batch or out survives the call
   * [never] crash on NaN/Inf input (return KEEL_ERR_NUMERIC after host->error, or write NaN,
   *         which the host reports); write outside the output slots' sizes */
  keel_status (*compute)(void *instance, const keel_objective_batch *batch,
                         keel_objective_output *out);
} keel_objective_vtable;

/* ---- Reward ---------------------------------------------------------------------------- */
typedef struct keel_reward_sample {
  uint32_t struct_size;
  uint32_t reserved0;
  const char *prompt;
  const char *response;        /* decoded response text */
  const int32_t *response_ids; /* [response_len] token ids */
  int64_t response_len;
  const char *reference;       /* reference answer ("" if none) */
  const char *task;            /* task name ("" if none) */
  const char *extra_json;      /* the dataset row's extra fields as a JSON object ("{}" if none) */
  int32_t truncated;           /* 1 if the response hit max_tokens without a stop token */
  int32_t reserved1;
} keel_reward_sample;

typedef struct keel_reward_batch {
  uint32_t struct_size;
  uint32_t reserved0;
  int64_t count;
  const keel_reward_sample *samples; /* [count], each element's struct_size is the stride */
} keel_reward_batch;

typedef struct keel_reward_output {
  uint32_t struct_size;
  uint32_t component_count; /* == the vtable's component_count */
  float *rewards;           /* [count] out */
  double *components;       /* [count * component_count] out, row-major per sample, or NULL
                               when component_count == 0 */
} keel_reward_output;

typedef struct keel_reward_vtable {
  uint32_t struct_size;
  uint32_t component_count;
  const keel_scalar_decl *components;
  /* One score per response (and its components).
   * [thread] any host thread; never two calls of one instance at once
   * [when] once per global step (for every rank's responses), and by `keel score` / eval
   * [keeps] nothing from batch or out   [never] crash on any text or ids */
  keel_status (*compute)(void *instance, const keel_reward_batch *batch, keel_reward_output *out);
} keel_reward_vtable;

/* ---- Baseline (advantage estimator) ------------------------------------------------------ */
typedef struct keel_baseline_batch {
  uint32_t struct_size;
  uint32_t reserved0;
  int64_t count;             /* responses */
  const float *rewards;      /* [count] */
  const int64_t *group_ids;  /* [count]; responses of one prompt share an id */
  const int64_t *lengths;    /* [count] response lengths in tokens (unmasked) */
} keel_baseline_batch;

typedef struct keel_baseline_output {
  uint32_t struct_size;
  uint32_t reserved0;
  float *advantages; /* [count] out: one advantage per response (broadcast to its tokens) */
} keel_baseline_output;

typedef struct keel_baseline_vtable {
  uint32_t struct_size;
  uint32_t reserved0;
  /* One advantage per response from the batch's rewards.
   * [thread] any host thread; never two calls of one instance at once
   * [when] once per global step, after the rewards   [keeps] nothing from batch or out
   * [never] crash on an empty batch or groups of size 1 */
  keel_status (*compute)(void *instance, const keel_baseline_batch *batch,
                         keel_baseline_output *out);
} keel_baseline_vtable;

/* ---- The descriptor ------------------------------------------------------------------------
 * Returned by keel_plugin_entry; static storage, valid forever (the library is never
 * unloaded). Every pointer field is required unless marked optional. */
typedef struct keel_plugin {
  uint32_t struct_size;
  uint32_t abi_major; /* the ABI the plugin was built against */
  uint32_t abi_minor;
  keel_kind kind;
  const char *name;        /* [a-z0-9-]+, how configs refer to it: "minirl" */
  const char *version;     /* the plugin's own version, e.g. "1.0.0" */
  const char *description; /* one line; objectives name their aggregation and verl/TRL twin */
  uint32_t param_count;
  uint32_t reserved0;
  const keel_param_decl *params; /* [param_count] (may be NULL when 0) */
  /* Make an instance; (1.1) an objective may write its needs to params->instance_flags.
   * [thread] any   [when] once per instance, before any other call on it
   * [keeps] `host` (valid until destroy returns); NOT params or its strings (copy them)
   * [never] leave *out_instance set on failure (call host->error, return non-zero) */
  keel_status (*create)(const keel_host *host, const keel_params *params, void **out_instance);
  /* Free an instance.
   * [thread] any   [when] exactly once per successful create, after its last call
   * [keeps] nothing: the instance and its host table are gone   [never] call the host */
  void (*destroy)(void *instance);
  /* Optional (NULL = none): an extension table for an id such as "org.example.ext/1", or NULL.
   * [thread] any, concurrently   [when] any time after the entry   [keeps] n/a: must be pure;
   * the returned table is static, valid forever   [never] depend on an instance (see below) */
  const void *(*get_extension)(const char *extension_id);
  /* The kind's function table: keel_objective_vtable, keel_reward_vtable or
   * keel_baseline_vtable, according to `kind`. */
  const void *vtable;
  /* Optional persistent state (all three NULL, or all three set): state_size returns the
   * byte size of the blob save_state writes; load_state restores it exactly, so a resumed
   * run continues bit for bit. Called between compute calls only. */
  /* [thread] any, one call per instance at a time   [when] between compute calls only
   * (checkpoint save / resume)   [keeps] nothing from `buffer`
   * [never] write more than `size` bytes; accept a blob that does not fit (KEEL_ERR_STATE) */
  keel_status (*state_size)(void *instance, uint64_t *out_size);
  keel_status (*save_state)(void *instance, void *buffer, uint64_t size);
  keel_status (*load_state)(void *instance, const void *buffer, uint64_t size);
  /* 1.1, optional (NULL = none; read only when struct_size covers it): an extension table of
   * this instance for an id, or NULL.
   * [thread] any, one call per instance at a time   [when] after create, before destroy
   * [keeps] the table may point into the instance: valid until destroy(instance)
   * [never] allocate per query (return the same table for the same id) */
  const void *(*get_instance_extension)(void *instance, const char *extension_id);
} keel_plugin;

/* ---- Keel-defined instance extensions (1.1) -------------------------------------------------
 * Tables a plugin may return from get_instance_extension for these ids. */

/* "org.keel.per-call/1": this instance's loss is NOT additive over calls — it normalises or
 * selects over the call's own tokens (a covariance top-k, a kept-token count), so the result
 * depends on how the host splits a step into micro-batches. The host then warns when a step is
 * split, and `keel plugins check` reports its split test instead of failing it. */
#define KEEL_EXT_PER_CALL "org.keel.per-call/1"
typedef struct keel_ext_per_call {
  uint32_t struct_size;
  uint32_t reserved0;
  const char *reason; /* one line: what depends on the call, e.g. "covariance top-k per call" */
} keel_ext_per_call;

/* The one exported symbol. Returns the descriptor, or NULL to refuse the host's ABI version
 * (the host reports both versions).
 * [thread] any   [when] once per process per library, before anything else; may be called
 * again and must return the same pointer   [keeps] n/a   [never] allocate per-call state */
typedef const keel_plugin *(*keel_plugin_entry_fn)(uint32_t host_abi_major,
                                                   uint32_t host_abi_minor);
#define KEEL_PLUGIN_ENTRY_SYMBOL "keel_plugin_entry"

#ifdef __cplusplus
}
#endif
#endif /* KEEL_PLUGIN_H */
