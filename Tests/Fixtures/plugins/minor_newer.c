/* minor_newer.c — fault fixture: a valid objective built for ABI minor KEEL_ABI_MINOR + 1,
 * i.e. newer than the host. The entry skips its own check, so the HOST must refuse it
 * (plugin minor > host minor), naming both versions and the fix (a newer keel). */
#include "common_objective.h"

FIXTURE_OBJECTIVE("fixture-minor-newer", fixture_reinforce, KEEL_ABI_MAJOR, KEEL_ABI_MINOR + 1u,
                  sizeof(keel_plugin));

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &fixture_plugin;
}
