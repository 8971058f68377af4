/* keel_abi.c — compile-time checks of the ABI header's layout (x86-64 / aarch64 LP64).
 * The header is the product of this target; this file only proves it compiles as C11
 * and pins the sizes that docs/abi.md states. */
#include "keel/keel_plugin.h"

_Static_assert(sizeof(keel_host) == 40, "keel_host layout changed");
_Static_assert(sizeof(keel_param_decl) == 72, "keel_param_decl layout changed");
_Static_assert(offsetof(keel_param_decl, choices) == 64, "keel_param_decl 1.0 prefix changed");
_Static_assert(sizeof(keel_params) == 24, "keel_params layout changed");
_Static_assert(sizeof(keel_objective_batch) == 168, "keel_objective_batch layout changed");
_Static_assert(offsetof(keel_objective_batch, entropy) == 120, "keel_objective_batch 1.0 prefix changed");
_Static_assert(sizeof(keel_objective_output) == 64, "keel_objective_output layout changed");
_Static_assert(offsetof(keel_objective_output, grad_entropy) == 32, "keel_objective_output 1.0 prefix changed");
_Static_assert(sizeof(keel_plugin) == 120, "keel_plugin layout changed");
_Static_assert(offsetof(keel_plugin, get_instance_extension) == 112, "keel_plugin 1.0 prefix changed");
_Static_assert(offsetof(keel_plugin, create) == 56, "keel_plugin layout changed");
_Static_assert(sizeof(keel_ext_per_call) == 16, "keel_ext_per_call layout changed");
