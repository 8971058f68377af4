/* keel_abi.c — compile-time checks of the ABI header's layout (x86-64 / aarch64 LP64).
 * The header is the product of this target; this file only proves it compiles as C11
 * and pins the sizes that docs/abi.md states. */
#include "keel/keel_plugin.h"

_Static_assert(sizeof(keel_host) == 40, "keel_host layout changed");
_Static_assert(sizeof(keel_param_decl) == 64, "keel_param_decl layout changed");
_Static_assert(sizeof(keel_objective_batch) == 120, "keel_objective_batch layout changed");
_Static_assert(sizeof(keel_plugin) == 112, "keel_plugin layout changed");
_Static_assert(offsetof(keel_plugin, create) == 56, "keel_plugin layout changed");
