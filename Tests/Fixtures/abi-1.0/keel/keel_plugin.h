/*
 * keel/keel_plugin.h — the Keel plugin ABI, version 1.0. THE source of truth.
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
#define KEEL_ABI_MINOR 0

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
 * The host gives every instance its own table, so messages are attributed to the instance.
 * Both functions may be called from inside any plugin call, on the calling thread. */
typedef struct keel_host {
  uint32_t struct_size;
  uint32_t abi_major; /* the host's KEEL_ABI_MAJOR */
  uint32_t abi_minor; /* the host's KEEL_ABI_MINOR */
  uint32_t reserved0;
  void *context; /* host-private; pass the table back unchanged */
  /* Log a line (copied by the host before returning). */
  void (*log)(const struct keel_host *host, keel_log_level level, const char *message);
  /* Record why the current call fails (copied). Call it before returning a non-zero status;
   * the host shows it with the plugin's path and name. The last call before the status wins. */
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
  const keel_param_value *values;
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
} keel_objective_batch;

typedef struct keel_objective_output {
  uint32_t struct_size;
  uint32_t metric_count; /* slots in `metrics` == the vtable's metric_count */
  double loss;           /* out: this call's share of the loss (to MINIMISE) */
  float *grad_logp;      /* [num_tokens] out: ∂loss/∂logp; host-zeroed, plugin overwrites.
                            Masked tokens must get 0. */
  double *metrics;       /* [metric_count] out: one value per declared metric */
} keel_objective_output;

#define KEEL_OBJECTIVE_USES_REF 1u /* flags: the objective reads logp_ref (host must supply it) */

typedef struct keel_objective_vtable {
  uint32_t struct_size;
  uint32_t flags;
  uint32_t metric_count;
  uint32_t reserved0;
  const keel_scalar_decl *metrics;
  const char *aggregation; /* e.g. "seq-mean-token-sum": how the loss is normalised */
  /* Compute loss, gradient and metrics for one call. Must not keep pointers into batch or
   * out after returning. NaN/Inf inputs: return KEEL_ERR_NUMERIC (with host->error) or write
   * NaN outputs, which the host reports; never crash. */
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
  /* Make an instance. On failure call host->error and return non-zero; *out_instance unset.
   * `host` stays valid until destroy(instance) returns. Any thread. */
  keel_status (*create)(const keel_host *host, const keel_params *params, void **out_instance);
  /* Free an instance. Called once per successful create. Any thread. */
  void (*destroy)(void *instance);
  /* Optional (may be NULL): return an extension table for a string id such as
   * "org.example.my-extension/1", or NULL if unsupported. The pointer stays valid forever. */
  const void *(*get_extension)(const char *extension_id);
  /* The kind's function table: keel_objective_vtable, keel_reward_vtable or
   * keel_baseline_vtable, according to `kind`. */
  const void *vtable;
  /* Optional persistent state (all three NULL, or all three set): state_size returns the
   * byte size of the blob save_state writes; load_state restores it exactly, so a resumed
   * run continues bit for bit. Called between compute calls only. */
  keel_status (*state_size)(void *instance, uint64_t *out_size);
  keel_status (*save_state)(void *instance, void *buffer, uint64_t size);
  keel_status (*load_state)(void *instance, const void *buffer, uint64_t size);
} keel_plugin;

/* The one exported symbol. Called once per process per library, before anything else; may
 * be called again (must return the same pointer). Returns NULL when the plugin refuses the
 * host's ABI version (the host reports both versions). Must not allocate per-call state. */
typedef const keel_plugin *(*keel_plugin_entry_fn)(uint32_t host_abi_major,
                                                   uint32_t host_abi_minor);
#define KEEL_PLUGIN_ENTRY_SYMBOL "keel_plugin_entry"

#ifdef __cplusplus
}
#endif
#endif /* KEEL_PLUGIN_H */
