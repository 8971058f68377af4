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
#include <keel/keel_plugin.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const keel_param_decl em_params[1] = {
    {sizeof(keel_param_decl), KEEL_PARAM_STRING, "marker",
     "answer = text after the last occurrence of this marker (\"\": the whole response)", 0.0, 0,
     "", 0.0, 0.0},
};

static const keel_scalar_decl em_components[1] = {
    {sizeof(keel_scalar_decl), KEEL_REDUCE_SEQUENCE_MEAN, "answer_found",
     "1 if a non-empty final answer was extracted from the response, else 0"},
};

typedef struct exact_match {
  const keel_host *host;
  char *marker; /* owned copy; "" = whole response */
  size_t marker_len;
} exact_match;

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static keel_status fail(const keel_host *host, keel_status status, const char *fmt, ...) {
  char message[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  if (host && host->error) host->error(host, message);
  return status;
}

/* ---- Text helpers (byte spans, no allocation) ------------------------------------------- */
typedef struct span {
  const char *p;
  size_t n;
} span;

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}
static int is_digit(char c) { return c >= '0' && c <= '9'; }

static span trim(span s) {
  while (s.n > 0 && is_space(s.p[0])) s.p++, s.n--;
  while (s.n > 0 && is_space(s.p[s.n - 1])) s.n--;
  return s;
}

static span normalise(span s) {
  s = trim(s);
  if (s.n > 0 && s.p[s.n - 1] == '.') s.n--;
  return trim(s);
}

/* The text after the last occurrence of marker; found = 0 when it does not occur. */
static span after_last(const char *text, const char *marker, size_t marker_len, int *found) {
  const char *last = NULL;
  for (const char *q = strstr(text, marker); q; q = strstr(q + 1, marker)) last = q;
  *found = last != NULL;
  if (!last) return (span){text, 0};
  const char *start = last + marker_len;
  return (span){start, strlen(start)};
}

/* If s is an integer, sets *neg and the digit span without sign/leading zeros (commas kept
 * inside, skipped on comparison) and returns 1. Grouping: first group 1-3 digits, then ",ddd". */
typedef struct integer {
  int neg;
  span digits; /* from the first significant digit (or the last '0' for zero) */
  size_t significant; /* number of digits in `digits`, commas excluded */
} integer;

static int parse_integer(span s, integer *out) {
  size_t i = 0;
  int neg = 0;
  if (i < s.n && (s.p[i] == '+' || s.p[i] == '-')) neg = s.p[i++] == '-';
  size_t body = i, group = 0;
  int has_comma = 0, first_group = 1;
  if (i == s.n) return 0;
  for (; i < s.n; i++) {
    char c = s.p[i];
    if (is_digit(c)) {
      group++;
      if (has_comma && group > 3) return 0;
    } else if (c == ',') {
      if (group == 0 || (first_group && group > 3) || (!first_group && group != 3)) return 0;
      has_comma = 1;
      first_group = 0;
      group = 0;
    } else {
      return 0;
    }
  }
  if (group == 0 || (has_comma && group != 3)) return 0;
  /* Skip leading zeros and commas, but keep at least one digit. */
  size_t start = body;
  while (start < s.n && (s.p[start] == '0' || s.p[start] == ',')) start++;
  size_t significant = 0;
  for (size_t k = start; k < s.n; k++) if (is_digit(s.p[k])) significant++;
  if (significant == 0) { /* the value is zero */
    out->neg = 0;
    out->digits = (span){"0", 1};
    out->significant = 1;
    return 1;
  }
  out->neg = neg;
  out->digits = (span){s.p + start, s.n - start};
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

static int answers_equal(span answer, span reference) {
  integer ia, ib;
  if (parse_integer(answer, &ia) && parse_integer(reference, &ib)) return integers_equal(&ia, &ib);
  return answer.n == reference.n && memcmp(answer.p, reference.p, answer.n) == 0;
}

/* ---- Instance --------------------------------------------------------------------------- */
static keel_status em_create(const keel_host *host, const keel_params *params,
                             void **out_instance) {
  const char *marker = em_params[0].default_s;
  uint32_t count = params ? params->count : 0;
  if (count > 0 && !params->values)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, "exact-match: %u parameter values but values is NULL",
                (unsigned)count);
  const char *cursor = count > 0 ? (const char *)params->values : NULL;
  for (uint32_t k = 0; k < count; k++) {
    const keel_param_value *v = (const keel_param_value *)(const void *)cursor;
    if (v->struct_size < sizeof(keel_param_value))
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  "exact-match: parameter value %u has struct_size %u (< %u)", (unsigned)k,
                  (unsigned)v->struct_size, (unsigned)sizeof(keel_param_value));
    cursor += v->struct_size;
    if (!v->name || strcmp(v->name, "marker") != 0)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT, "exact-match: unknown parameter '%s' (valid: marker)",
                  v->name ? v->name : "(null)");
    if (v->type != KEEL_PARAM_STRING || !v->s)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT, "exact-match: parameter 'marker' must be a string");
    marker = v->s;
  }
  exact_match *e = malloc(sizeof *e);
  size_t len = strlen(marker);
  char *copy = malloc(len + 1);
  if (!e || !copy) {
    free(e);
    free(copy);
    return fail(host, KEEL_ERR_INTERNAL, "exact-match: out of memory creating an instance");
  }
  memcpy(copy, marker, len + 1);
  e->host = host;
  e->marker = copy;
  e->marker_len = len;
  *out_instance = e;
  return KEEL_OK;
}

static void em_destroy(void *instance) {
  exact_match *e = instance;
  if (!e) return;
  free(e->marker);
  free(e);
}

static keel_status em_compute(void *instance, const keel_reward_batch *batch,
                              keel_reward_output *out) {
  const exact_match *e = instance;
  const keel_host *host = e->host;
  if (!batch || !out) return fail(host, KEEL_ERR_INVALID_ARGUMENT, "exact-match: NULL batch or output");
  if (batch->count < 0)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, "exact-match: negative count %lld",
                (long long)batch->count);
  if (batch->count == 0) return KEEL_OK;
  if (!batch->samples || !out->rewards)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, "exact-match: samples or rewards is NULL");
  if (out->component_count != 1 || !out->components)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                "exact-match: output has %u component slots, expected 1",
                (unsigned)out->component_count);
  const char *cursor = (const char *)batch->samples;
  for (int64_t i = 0; i < batch->count; i++) {
    const keel_reward_sample *s = (const keel_reward_sample *)(const void *)cursor;
    if (s->struct_size < sizeof(keel_reward_sample))
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  "exact-match: sample %lld has struct_size %u (< %u)", (long long)i,
                  (unsigned)s->struct_size, (unsigned)sizeof(keel_reward_sample));
    cursor += s->struct_size;
    if (!s->response || !s->reference)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT, "exact-match: sample %lld has a NULL %s",
                  (long long)i, !s->response ? "response" : "reference");
    int found = 1;
    span answer = e->marker_len == 0 ? (span){s->response, strlen(s->response)}
                                     : after_last(s->response, e->marker, e->marker_len, &found);
    answer = normalise(answer);
    found = found && answer.n > 0;
    span reference = normalise((span){s->reference, strlen(s->reference)});
    out->rewards[i] = found && answers_equal(answer, reference) ? 1.0f : 0.0f;
    out->components[i] = found ? 1.0 : 0.0;
  }
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_reward_vtable em_vtable = {
    sizeof(keel_reward_vtable), 1u, em_components, em_compute,
};

static const keel_plugin em_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_REWARD,
    .name = "exact-match",
    .version = "1.0.0",
    .description = "1 if the final answer (after the last `marker`, or the whole response) equals "
                   "the reference after trimming; integers compare by value",
    .param_count = 1,
    .params = em_params,
    .create = em_create,
    .destroy = em_destroy,
    .get_extension = NULL,
    .vtable = &em_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* A static const, not the macro: `unsigned < 0` would trip -Wtype-limits while MINOR is 0. */
static const uint32_t em_built_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < em_built_minor) return NULL;
  return &em_plugin;
}
