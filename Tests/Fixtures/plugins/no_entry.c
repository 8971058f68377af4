/* no_entry.c — fault fixture: a shared library WITHOUT keel_plugin_entry.
 * Tests: the host reports "no keel_plugin_entry symbol" (naming the path) instead of crashing.
 * It exports an unrelated function and a near-miss name so only the exact symbol counts. */
#include <stdint.h>

int keel_fixture_no_entry_marker(void) { return 42; }
const void *keel_plugin_entry_v2(uint32_t major, uint32_t minor) {
  (void)major;
  (void)minor;
  return 0;
}
