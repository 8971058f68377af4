/*
 * exact_match.c — the "exact-match" reward plugin (Keel ABI 1.0).
 *
 * Contract: reward 1.0 when the response's final answer equals the reference, else 0.0.
 *  - Answer: with `marker` == "" the whole response; otherwise the text after the LAST
 *    occurrence of `marker` (marker absent → no answer, reward 0).
 *  - Normalisation (answer and reference alike): trim ASCII whitespace, drop one trailing
 *    '.', trim trailing whitespace again. If the result is an integer — optional sign,
 *    digits, optionally grouped by ',' thousands separators (1-3 digits, then groups of 3) —
 *    it compares as a canonical integer ('+', commas and leading zeros dropped, "-0" == "0");
 *    otherwise the normalised strings compare byte for byte.
 *  - An empty answer (after normalisation) never matches, not even an empty reference.
 *  - Component `answer_found` (SEQUENCE_MEAN): 1.0 when an answer was extracted and is
 *    non-empty after normalisation, else 0.0.
 * A NULL response or reference → KEEL_ERR_INVALID_ARGUMENT naming the sample index. Samples
 * are walked with each element's struct_size as the stride. No mutable globals; the instance
 * owns a copy of `marker`. Exports only keel_plugin_entry.
 */
#include "../common/answer.h"
#include "../common/plugin_util.h"
#include "../common/reward_batch.h"

#define PLUGIN_NAME "exact-match"

static const keel_param_decl em_params[1] = {
    KP_STRING("marker",
              "answer = text after the last occurrence of this marker (\"\": the whole response)",
              ""),
};

static const keel_scalar_decl em_components[1] = {
    KP_SCALAR(KEEL_REDUCE_SEQUENCE_MEAN, "answer_found",
              "1 if a non-empty final answer was extracted from the response, else 0"),
};

/* ---- Integers (the syntax is ans_is_integer's) ------------------------------------------ */
/* If s is an integer, sets *neg and the digit span without sign/leading zeros (commas kept
 * inside, skipped on comparison) and returns 1. */
typedef struct integer {
  int neg;
  ans_span digits;    /* from the first significant digit (or the last '0' for zero) */
  size_t significant; /* number of digits in `digits`, commas excluded */
} integer;

static int parse_integer(ans_span s, integer *out) {
  if (!ans_is_integer(s)) return 0;
  size_t body = 0;
  int neg = 0;
  if (s.p[0] == '+' || s.p[0] == '-') neg = s.p[body++] == '-';
  /* Skip leading zeros and commas, but keep at least one digit. */
  size_t start = body;
  while (start < s.n && (s.p[start] == '0' || s.p[start] == ',')) start++;
  size_t significant = 0;
  for (size_t k = start; k < s.n; k++)
    if (ans_is_digit(s.p[k])) significant++;
  if (significant == 0) { /* the value is zero */
    out->neg = 0;
    out->digits = (ans_span){"0", 1};
    out->significant = 1;
    return 1;
  }
  out->neg = neg;
  out->digits = (ans_span){s.p + start, s.n - start};
  out->significant = significant;
  return 1;
}

static int integers_equal(const integer *a, const integer *b) {
  if (a->neg != b->neg || a->significant != b->significant) return 0;
  size_t i = 0, j = 0;
  for (;;) {
    while (i < a->digits.n && a->digits.p[i] == ',') i++;
    while (j < b->digits.n && b->digits.p[j] == ',') j++;
    if (i == a->digits.n || j == b->digits.n) return i == a->digits.n && j == b->digits.n;
    if (a->digits.p[i++] != b->digits.p[j++]) return 0;
  }
}

static int answers_equal(ans_span answer, ans_span reference) {
  integer ia, ib;
  if (parse_integer(answer, &ia) && parse_integer(reference, &ib)) return integers_equal(&ia, &ib);
  return answer.n == reference.n && memcmp(answer.p, reference.p, answer.n) == 0;
}

/* ---- Instance (an ans_reward: the marker; no mode) -------------------------------------- */
static keel_status em_create(const keel_host *host, const keel_params *params,
                             void **out_instance) {
  kp_value v[1];
  keel_status s = kp_read_params(host, PLUGIN_NAME, em_params, 1, params, v, KP_STRINGS_ONLY);
  if (s) return s;
  return ans_reward_new(host, PLUGIN_NAME, v[0].s, 0, out_instance);
}

static keel_status em_score(const void *instance, const keel_reward_sample *s, int64_t i,
                            keel_reward_output *out) {
  const ans_reward *e = instance;
  if (!s->response || !s->reference)
    return kp_fail(e->host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": sample %lld has a NULL %s",
                   (long long)i, !s->response ? "response" : "reference");
  int found;
  const ans_span answer = ans_reward_answer(e, s->response, &found);
  const ans_span reference = ans_normalise(ans_string(s->reference));
  out->rewards[i] = found && answers_equal(answer, reference) ? 1.0f : 0.0f;
  out->components[i] = found ? 1.0 : 0.0;
  return KEEL_OK;
}

static keel_status em_compute(void *instance, const keel_reward_batch *batch,
                              keel_reward_output *out) {
  const ans_reward *e = instance;
  return kr_compute(e->host, PLUGIN_NAME, e, batch, out, 1, em_score);
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_reward_vtable em_vtable = {
    sizeof(keel_reward_vtable), 1u, em_components, em_compute,
};

static const keel_plugin em_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_REWARD),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "1 if the final answer (after the last `marker`, or the whole response) equals "
                   "the reference after trimming; integers compare by value",
    .param_count = 1,
    .params = em_params,
    .create = em_create,
    .destroy = ans_reward_destroy,
    .vtable = &em_vtable,
};

KP_DEFINE_ENTRY(em_plugin)
