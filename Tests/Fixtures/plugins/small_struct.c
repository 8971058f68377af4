/* small_struct.c — fault fixture: a descriptor whose struct_size is 16, smaller than the
 * 1.0 keel_plugin. Tests: the host checks struct_size before reading any other field and
 * refuses the plugin with a message, without reading past the claimed size. */
#include "common_objective.h"

FIXTURE_OBJECTIVE("fixture-small-struct", fixture_reinforce, KEEL_ABI_MAJOR, KEEL_ABI_MINOR, 16u);

static const uint32_t fixture_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < fixture_minor) return NULL;
  return &fixture_plugin;
}
