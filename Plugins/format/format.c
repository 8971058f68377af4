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
#include <keel/keel_plugin.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUGIN_NAME "format"

/* ---- Parameters (declaration order is the order create() receives them in) ------------ */
enum { P_PATTERN, P_MARKER, P_COUNT };

static const keel_param_decl format_params[P_COUNT] = {
    {sizeof(keel_param_decl), KEEL_PARAM_STRING, "pattern",
     "expected answer form: digits (optional sign, digits only) | integer (also 1,234) | "
     "nonempty",
     0.0, 0, "digits", 0.0, 0.0},
    {sizeof(keel_param_decl), KEEL_PARAM_STRING, "marker",
     "answer = text after the last occurrence of this marker (\"\": the whole response)", 0.0, 0,
     "", 0.0, 0.0},
};

static const keel_scalar_decl format_components[1] = {
    {sizeof(keel_scalar_decl), KEEL_REDUCE_SEQUENCE_MEAN, "answer_found",
     "1 if a non-empty final answer was extracted from the response, else 0"},
};

enum { PATTERN_DIGITS, PATTERN_INTEGER, PATTERN_NONEMPTY };
static const char *const pattern_choices[] = {"digits", "integer", "nonempty", NULL};

typedef struct format_reward {
  const keel_host *host;
  int pattern;
  char *marker; /* owned copy; "" = whole response */
  size_t marker_len;
} format_reward;

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

/* Optional sign, then one or more digits, nothing else. */
static int is_digits(span s) {
  size_t i = 0;
  if (i < s.n && (s.p[i] == '+' || s.p[i] == '-')) i++;
  if (i == s.n) return 0;
  for (; i < s.n; i++)
    if (!is_digit(s.p[i])) return 0;
  return 1;
}

/* exact-match's integer syntax: optional sign, digits, optionally grouped by ',' thousands
 * separators (first group 1-3 digits, then groups of exactly 3). */
static int is_integer(span s) {
  size_t i = 0, group = 0;
  int has_comma = 0, first_group = 1;
  if (i < s.n && (s.p[i] == '+' || s.p[i] == '-')) i++;
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
  return group > 0 && (!has_comma || group == 3);
}

/* ---- Instance --------------------------------------------------------------------------- */
static keel_status format_create(const keel_host *host, const keel_params *params,
                                 void **out_instance) {
  const char *sv[P_COUNT];
  for (int j = 0; j < P_COUNT; j++) sv[j] = format_params[j].default_s;
  uint32_t count = params ? params->count : 0;
  if (count > 0 && !params->values)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": %u parameter values but values is NULL", (unsigned)count);
  /* Walk by each value's struct_size (== sizeof as the host compiled it), matching by name. */
  const char *cursor = count > 0 ? (const char *)params->values : NULL;
  for (uint32_t k = 0; k < count; k++) {
    const keel_param_value *v = (const keel_param_value *)(const void *)cursor;
    if (v->struct_size < sizeof(keel_param_value))
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": parameter value %u has struct_size %u (< %u)", (unsigned)k,
                  (unsigned)v->struct_size, (unsigned)sizeof(keel_param_value));
    cursor += v->struct_size;
    int j = 0;
    while (j < P_COUNT && !(v->name && strcmp(v->name, format_params[j].name) == 0)) j++;
    if (j == P_COUNT)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": unknown parameter '%s' (valid: pattern, marker)",
                  v->name ? v->name : "(null)");
    if (v->type != KEEL_PARAM_STRING || !v->s)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": parameter '%s' must be a string",
                  format_params[j].name);
    sv[j] = v->s;
  }
  int pattern = -1;
  for (int k = 0; pattern_choices[k]; k++)
    if (strcmp(sv[P_PATTERN], pattern_choices[k]) == 0) pattern = k;
  if (pattern < 0)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": parameter 'pattern' = '%s' is not one of digits, integer, nonempty",
                sv[P_PATTERN]);
  format_reward *e = malloc(sizeof *e);
  size_t len = strlen(sv[P_MARKER]);
  char *copy = malloc(len + 1);
  if (!e || !copy) {
    free(e);
    free(copy);
    return fail(host, KEEL_ERR_INTERNAL, PLUGIN_NAME ": out of memory creating an instance");
  }
  memcpy(copy, sv[P_MARKER], len + 1);
  e->host = host;
  e->pattern = pattern;
  e->marker = copy;
  e->marker_len = len;
  *out_instance = e;
  return KEEL_OK;
}

static void format_destroy(void *instance) {
  format_reward *e = instance;
  if (!e) return;
  free(e->marker);
  free(e);
}

static keel_status format_compute(void *instance, const keel_reward_batch *batch,
                                  keel_reward_output *out) {
  const format_reward *e = instance;
  const keel_host *host = e->host;
  if (!batch || !out)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": NULL batch or output");
  if (batch->count < 0)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": negative count %lld",
                (long long)batch->count);
  if (batch->count == 0) return KEEL_OK;
  if (!batch->samples || !out->rewards)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": samples or rewards is NULL");
  if (out->component_count != 1 || !out->components)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": output has %u component slots, expected 1",
                (unsigned)out->component_count);
  const char *cursor = (const char *)batch->samples;
  for (int64_t i = 0; i < batch->count; i++) {
    const keel_reward_sample *s = (const keel_reward_sample *)(const void *)cursor;
    if (s->struct_size < sizeof(keel_reward_sample))
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": sample %lld has struct_size %u (< %u)", (long long)i,
                  (unsigned)s->struct_size, (unsigned)sizeof(keel_reward_sample));
    cursor += s->struct_size;
    if (!s->response)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": sample %lld has a NULL response",
                  (long long)i);
    int found = 1;
    span answer = e->marker_len == 0 ? (span){s->response, strlen(s->response)}
                                     : after_last(s->response, e->marker, e->marker_len, &found);
    answer = normalise(answer);
    found = found && answer.n > 0;
    int ok = 0;
    if (found) {
      switch (e->pattern) {
        case PATTERN_DIGITS: ok = is_digits(answer); break;
        case PATTERN_INTEGER: ok = is_integer(answer); break;
        default: ok = 1; break;
      }
    }
    out->rewards[i] = ok ? 1.0f : 0.0f;
    out->components[i] = found ? 1.0 : 0.0;
  }
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_reward_vtable format_vtable = {
    sizeof(keel_reward_vtable), 1u, format_components, format_compute,
};

static const keel_plugin format_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_REWARD,
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "1 if the final answer (after the last `marker`, or the whole response) has the "
                   "expected form (pattern digits: optional sign then digits only), else 0",
    .param_count = P_COUNT,
    .params = format_params,
    .create = format_create,
    .destroy = format_destroy,
    .get_extension = NULL,
    .vtable = &format_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* A static const, not the macro: `unsigned < 0` would trip -Wtype-limits while MINOR is 0. */
static const uint32_t format_built_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < format_built_minor) return NULL;
  return &format_plugin;
}
