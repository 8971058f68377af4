/* null_entry.c — fault fixture: keel_plugin_entry always returns NULL (refuses every host).
 * Tests: the host reports the refusal with both ABI versions and does not dereference NULL. */
#include <keel/keel_plugin.h>

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return NULL;
}
