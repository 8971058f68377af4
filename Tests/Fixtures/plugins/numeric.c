/* numeric.c — NOT a Keel plugin: a plain C library for the libffi foreign-reward tests of
 * `double` and `float` arguments and results (ForeignRewardTests, ForeignEvalTests). The host
 * calls these by a signature declared at run time; each result is chosen so that the test can
 * state it by hand, exactly:
 *   double difference(double a, double b)      a - b
 *   float  difference_f(float a, float b)      a - b, in float arithmetic
 *   double is_tenth(double x)                  1.0 when x is exactly the double nearest 0.1
 *                                              (a float 0.1 widened to double is not), else 0.0
 *   float  is_tenth_f(float x)                 1.0f when x is exactly the float nearest 0.1
 *   double divide(double a, double b)          a / b (1/0 = inf, 0/0 = NaN: the refusals)
 *   double or_minus_one(double x)              x, or -1.0 when x is NaN (a response stating
 *                                              no number)
 *   double mixed(const char *s, double x, float y, int64_t n, const int32_t *ids)
 *          strlen(s) + 10 x + 100 y + 1000 n + 10000 ids[0] (ids[0] only when n > 0):
 *          pointer, integer and floating-point arguments interleaved, so that a slot given the
 *          wrong register class shows in the digits.
 * No libm: fabs/sqrt come from the system's libm in the tests. */
#include <stdint.h>
#include <string.h>

double difference(double a, double b) { return a - b; }

float difference_f(float a, float b) { return a - b; }

double is_tenth(double x) { return x == 0.1 ? 1.0 : 0.0; }

float is_tenth_f(float x) { return x == 0.1f ? 1.0f : 0.0f; }

double divide(double a, double b) { return a / b; }

double or_minus_one(double x) { return x != x ? -1.0 : x; }

double mixed(const char *s, double x, float y, int64_t n, const int32_t *ids) {
  return (double)strlen(s) + 10.0 * x + 100.0 * (double)y + 1000.0 * (double)n +
         (n > 0 ? 10000.0 * (double)ids[0] : 0.0);
}
