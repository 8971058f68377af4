/*
 * answer.h — final-answer extraction and normalisation shared by the "exact-match" and "format"
 * reward plugins (byte spans over the response, no allocation). Shared static inline code; see
 * plugin_util.h for how Plugins/common/ is included.
 *
 *  - Extraction: with an empty marker the whole response; otherwise the text after the LAST
 *    occurrence of the marker (absent → no answer).
 *  - Normalisation: trim ASCII whitespace (space, \t, \n, \v, \f, \r), drop one trailing '.',
 *    trim again.
 *  - An answer is "found" when it was extracted and is non-empty after normalisation.
 *  - Integer syntax: an optional sign ('+' or '-'), then ASCII digits, optionally grouped by
 *    ',' thousands separators (a first group of 1-3 digits, then groups of exactly 3).
 * ans_reward is the instance both plugins use: the host, an owned copy of `marker`, and the
 * plugin's own mode (format's pattern).
 */
#ifndef KEEL_PLUGINS_COMMON_ANSWER_H
#define KEEL_PLUGINS_COMMON_ANSWER_H

#include <stddef.h>
#include <string.h>

#include "plugin_util.h"

typedef struct ans_span {
  const char *p;
  size_t n;
} ans_span;

static inline ans_span ans_string(const char *s) { return (ans_span){s, strlen(s)}; }

static inline int ans_is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}
static inline int ans_is_digit(char c) { return c >= '0' && c <= '9'; }

static inline ans_span ans_trim(ans_span s) {
  while (s.n > 0 && ans_is_space(s.p[0])) s.p++, s.n--;
  while (s.n > 0 && ans_is_space(s.p[s.n - 1])) s.n--;
  return s;
}

static inline ans_span ans_normalise(ans_span s) {
  s = ans_trim(s);
  if (s.n > 0 && s.p[s.n - 1] == '.') s.n--;
  return ans_trim(s);
}

/* The text after the last occurrence of marker; *found = 0 when it does not occur. */
static inline ans_span ans_after_last(const char *text, const char *marker, size_t marker_len,
                                      int *found) {
  const char *last = NULL;
  for (const char *q = strstr(text, marker); q; q = strstr(q + 1, marker)) last = q;
  *found = last != NULL;
  if (!last) return (ans_span){text, 0};
  const char *start = last + marker_len;
  return (ans_span){start, strlen(start)};
}

/* The normalised final answer of `response` (marker "" = the whole response); *found as above. */
static inline ans_span ans_final(const char *response, const char *marker, size_t marker_len,
                                 int *found) {
  int extracted = 1;
  ans_span answer = marker_len == 0 ? ans_string(response)
                                    : ans_after_last(response, marker, marker_len, &extracted);
  answer = ans_normalise(answer);
  *found = extracted && answer.n > 0;
  return answer;
}

/* An optional sign, then one or more ASCII digits, nothing else. */
static inline int ans_is_digits(ans_span s) {
  size_t i = 0;
  if (i < s.n && (s.p[i] == '+' || s.p[i] == '-')) i++;
  if (i == s.n) return 0;
  for (; i < s.n; i++)
    if (!ans_is_digit(s.p[i])) return 0;
  return 1;
}

/* The integer syntax above. */
static inline int ans_is_integer(ans_span s) {
  size_t i = 0, group = 0;
  int has_comma = 0, first_group = 1;
  if (i < s.n && (s.p[i] == '+' || s.p[i] == '-')) i++;
  if (i == s.n) return 0;
  for (; i < s.n; i++) {
    char c = s.p[i];
    if (ans_is_digit(c)) {
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

/* ---- The instance of a final-answer reward ---------------------------------------------- */
typedef struct ans_reward {
  const keel_host *host;
  int mode;     /* the plugin's choice (format: the pattern); 0 when it has none */
  char *marker; /* owned copy; "" = whole response */
  size_t marker_len;
} ans_reward;

/* create()'s last step: an ans_reward owning a copy of marker (KEEL_ERR_INTERNAL when out of
 * memory: "<plugin>: out of memory creating an instance"). */
static inline keel_status ans_reward_new(const keel_host *host, const char *plugin,
                                         const char *marker, int mode, void **out_instance) {
  ans_reward *e = malloc(sizeof *e);
  size_t len = 0;
  char *copy = kp_strdup(marker, &len);
  if (!e || !copy) {
    free(e);
    free(copy);
    return kp_fail_oom(host, plugin);
  }
  e->host = host;
  e->mode = mode;
  e->marker = copy;
  e->marker_len = len;
  *out_instance = e;
  return KEEL_OK;
}

static inline void ans_reward_destroy(void *instance) {
  ans_reward *e = instance;
  if (!e) return;
  free(e->marker);
  free(e);
}

/* The instance's final answer of `response` (see ans_final). */
static inline ans_span ans_reward_answer(const ans_reward *e, const char *response, int *found) {
  return ans_final(response, e->marker, e->marker_len, found);
}

#endif /* KEEL_PLUGINS_COMMON_ANSWER_H */
