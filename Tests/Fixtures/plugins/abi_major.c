/* abi_major.c — fault fixture: a valid objective built for ABI major KEEL_ABI_MAJOR + 1.
 * The entry skips its own version check, so the HOST must refuse it from the descriptor
 * (naming both versions), never call create. */
#include "common_objective.h"

FIXTURE_OBJECTIVE("fixture-abi-major", fixture_reinforce, KEEL_ABI_MAJOR + 1u, 0u,
                  sizeof(keel_plugin));

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &fixture_plugin;
}
