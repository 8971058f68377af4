/* common_reward.h — shared by the fixture rewards (not a fixture itself): a trivial destroy and
 * the vtable, descriptor and entry of a reward named NAME, so each fixture only states what it
 * does. Everything is static; each fixture exports only keel_plugin_entry. */
#ifndef KEEL_FIXTURE_COMMON_REWARD_H
#define KEEL_FIXTURE_COMMON_REWARD_H
#include <keel/keel_plugin.h>

static inline void fixture_reward_destroy(void *instance) { (void)instance; }

/* A reward NAME whose create is CREATE and compute COMPUTE, with COUNT declared components
 * DECLS (0 and NULL for none); the entry accepts this header's major and any newer minor. */
#define FIXTURE_REWARD(NAME, DESCRIPTION, CREATE, COMPUTE, COUNT, DECLS)                       \
  static const keel_reward_vtable fixture_reward_vtable = {sizeof(keel_reward_vtable), (COUNT), \
                                                           (DECLS), (COMPUTE)};                 \
  static const keel_plugin fixture_reward_plugin = {                                            \
      .struct_size = sizeof(keel_plugin),                                                       \
      .abi_major = KEEL_ABI_MAJOR,                                                              \
      .abi_minor = KEEL_ABI_MINOR,                                                              \
      .kind = KEEL_KIND_REWARD,                                                                 \
      .name = (NAME),                                                                           \
      .version = "0.0.1",                                                                       \
      .description = (DESCRIPTION),                                                             \
      .create = (CREATE),                                                                       \
      .destroy = fixture_reward_destroy,                                                        \
      .vtable = &fixture_reward_vtable,                                                         \
  };                                                                                            \
  KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major,                     \
                                                   uint32_t host_abi_minor) {                   \
    if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < KEEL_ABI_MINOR) return NULL;       \
    return &fixture_reward_plugin;                                                              \
  }

#endif
