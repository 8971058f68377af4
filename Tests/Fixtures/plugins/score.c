/* score.c — NOT a Keel plugin: a plain C library for the libffi foreign-reward tests, whose
 * functions the host calls by a signature declared in the run config.
 *   double  score(response, reference)    1.0 if the strings are equal, else 0.0
 *   int32_t count_tokens(ids, n, wanted)  how many of ids[0..n) equal wanted
 *   float   length_ratio(prompt, response) strlen(response) / (strlen(prompt) + 1)
 *   int64_t digits(response)              number of ASCII digits in response */
#include <stdint.h>
#include <string.h>

double score(const char *response, const char *reference) {
  return strcmp(response, reference) == 0 ? 1.0 : 0.0;
}

int32_t count_tokens(const int32_t *ids, int64_t n, int32_t wanted) {
  int32_t count = 0;
  for (int64_t i = 0; i < n; i++) count += ids[i] == wanted;
  return count;
}

float length_ratio(const char *prompt, const char *response) {
  return (float)strlen(response) / (float)(strlen(prompt) + 1);
}

int64_t digits(const char *response) {
  int64_t count = 0;
  for (; *response; response++) count += *response >= '0' && *response <= '9';
  return count;
}

/* sum_ids(ids, n): the sum of the response's token ids (for the response_ids/response_len kinds). */
int64_t sum_ids(const int32_t *ids, int64_t n) {
  int64_t s = 0;
  for (int64_t i = 0; i < n; i++) s += ids[i];
  return s;
}
