/*
 * format.c — the "format" reward plugin (Keel ABI 1.0): 1.0 when the response ends in an
 * answer of the expected form, else 0.0 (a format reward, as in DeepSeek-R1's rule-based
 * rewards; the answer's correctness is exact-match's business).
 *
 * Contract:
 *  - Answer: with `marker` == "" the whole response; otherwise the text after the LAST
 *    occurrence of `marker` (marker absent → no answer, reward 0). The same extraction as
 *    "exact-match".
 *  - Normalisation (as "exact-match"): trim ASCII whitespace, drop one trailing '.', trim
 *    trailing whitespace again.
 *  - `pattern` (checked against the normalised answer):
 *      "digits"   (default) an optional sign ('+' or '-') followed by one or more ASCII digits
 *                 and nothing else: "42", "-7", "+007"; not "4 2", "1,234", "3.5", "".
 *      "integer"  exact-match's integer syntax: "digits", or digits grouped by ',' thousands
 *                 separators (1-3 digits, then groups of exactly 3): "1,234", "-12,000".
 *      "nonempty" any non-empty answer.
 *    Any other value is refused by create() with KEEL_ERR_INVALID_ARGUMENT.
 *  - Component `answer_found` (SEQUENCE_MEAN): 1.0 when an answer was extracted and is
 *    non-empty after normalisation, else 0.0 (whether or not it has the expected form).
 * The reference, task and token ids are not read. A NULL response → KEEL_ERR_INVALID_ARGUMENT
 * naming the sample index. Samples are walked with each element's struct_size as the stride.
 * No mutable globals; the instance owns a copy of `marker`. Exports only keel_plugin_entry.
 */
#include "../common/answer.h"
#include "../common/plugin_util.h"
#include "../common/reward_batch.h"

#define PLUGIN_NAME "format"

/* ---- Parameters (declaration order is the order create() receives them in) -------------- */
enum { P_PATTERN, P_MARKER, P_COUNT };

static const keel_param_decl format_params[P_COUNT] = {
    KP_STRING("pattern",
              "expected answer form: digits (optional sign, digits only) | integer (also 1,234) | "
              "nonempty",
              "digits"),
    KP_STRING("marker",
              "answer = text after the last occurrence of this marker (\"\": the whole response)",
              ""),
};

static const keel_scalar_decl format_components[1] = {
    KP_SCALAR(KEEL_REDUCE_SEQUENCE_MEAN, "answer_found",
              "1 if a non-empty final answer was extracted from the response, else 0"),
};

enum { PATTERN_DIGITS, PATTERN_INTEGER, PATTERN_NONEMPTY };
static const char *const pattern_choices[] = {"digits", "integer", "nonempty"};

/* ---- Instance (an ans_reward: the marker; mode = the pattern) --------------------------- */
static keel_status format_create(const keel_host *host, const keel_params *params,
                                 void **out_instance) {
  kp_value v[P_COUNT];
  keel_status s =
      kp_read_params(host, PLUGIN_NAME, format_params, P_COUNT, params, v, KP_STRINGS_ONLY);
  if (s) return s;
  int pattern = PATTERN_DIGITS;
  s = kp_choice(host, PLUGIN_NAME, "pattern", v[P_PATTERN].s, pattern_choices,
                KP_COUNT(pattern_choices), &pattern);
  if (s) return s;
  return ans_reward_new(host, PLUGIN_NAME, v[P_MARKER].s, pattern, out_instance);
}

static keel_status format_score(const void *instance, const keel_reward_sample *s, int64_t i,
                                keel_reward_output *out) {
  const ans_reward *e = instance;
  if (!s->response)
    return kp_fail(e->host, KEEL_ERR_INVALID_ARGUMENT,
                   PLUGIN_NAME ": sample %lld has a NULL response", (long long)i);
  int found;
  const ans_span answer = ans_reward_answer(e, s->response, &found);
  int ok = 0;
  if (found) {
    switch (e->mode) {
      case PATTERN_DIGITS: ok = ans_is_digits(answer); break;
      case PATTERN_INTEGER: ok = ans_is_integer(answer); break;
      default: ok = 1; break;
    }
  }
  out->rewards[i] = ok ? 1.0f : 0.0f;
  out->components[i] = found ? 1.0 : 0.0;
  return KEEL_OK;
}

static keel_status format_compute(void *instance, const keel_reward_batch *batch,
                                  keel_reward_output *out) {
  const ans_reward *e = instance;
  return kr_compute(e->host, PLUGIN_NAME, e, batch, out, 1, format_score);
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_reward_vtable format_vtable = {
    sizeof(keel_reward_vtable), 1u, format_components, format_compute,
};

static const keel_plugin format_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_REWARD),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "1 if the final answer (after the last `marker`, or the whole response) has the "
                   "expected form (pattern digits: optional sign then digits only), else 0",
    .param_count = P_COUNT,
    .params = format_params,
    .create = format_create,
    .destroy = ans_reward_destroy,
    .vtable = &format_vtable,
};

KP_DEFINE_ENTRY(format_plugin)
