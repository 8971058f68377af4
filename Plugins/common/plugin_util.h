/*
 * plugin_util.h — helpers shared by Keel's built-in C plugins (Keel ABI 1.0): host error
 * formatting, parameter reading (by declaration, matched by name, with type and range checks),
 * string choices, declaration shorthands and the entry-point version check.
 *
 * Plugins/common/ is not a SwiftPM target: a plugin includes these headers by relative path
 * (#include "../common/plugin_util.h") and compiles its own copy. Every function is
 * `static inline` and no header defines data, so each plugin stays a standalone library whose
 * only exported symbol is keel_plugin_entry, and nothing here keeps mutable state.
 *
 * Messages: every failure calls host->error (when the host has one) with one line of at most
 * 511 bytes, "<plugin>: <what>", before its non-zero status is returned (ABI rule: error
 * first, then the status). The wording below is part of each plugin's behaviour.
 */
#ifndef KEEL_PLUGINS_COMMON_PLUGIN_UTIL_H
#define KEEL_PLUGINS_COMMON_PLUGIN_UTIL_H

#include <keel/keel_plugin.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define KP_PRINTF(fmt_index, args_index) __attribute__((format(printf, fmt_index, args_index)))
#else
#define KP_PRINTF(fmt_index, args_index)
#endif

/* ---- Errors ----------------------------------------------------------------------------- */

/* Format the message (truncated to 511 bytes), hand it to host->error, return `status`. */
KP_PRINTF(3, 4)
static inline keel_status kp_fail(const keel_host *host, keel_status status, const char *fmt,
                                  ...) {
  char message[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  if (host && host->error) host->error(host, message);
  return status;
}

/* "<plugin>: out of memory creating an instance" (KEEL_ERR_INTERNAL). */
static inline keel_status kp_fail_oom(const keel_host *host, const char *plugin) {
  return kp_fail(host, KEEL_ERR_INTERNAL, "%s: out of memory creating an instance", plugin);
}

/* ---- Declaration shorthands (the fields a declaration of that type leaves unused are 0/"") */
#define KP_FLOAT(name, doc, def, lo, hi)                                                           \
  {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, name, doc, def, 0, "", lo, hi, NULL}
#define KP_INT(name, doc, def, lo, hi)                                                             \
  {sizeof(keel_param_decl), KEEL_PARAM_INT, name, doc, 0.0, def, "", lo, hi, NULL}
#define KP_BOOL(name, doc, def)                                                                    \
  {sizeof(keel_param_decl), KEEL_PARAM_BOOL, name, doc, 0.0, def, "", 0.0, 1.0, NULL}
#define KP_STRING(name, doc, def)                                                                  \
  {sizeof(keel_param_decl), KEEL_PARAM_STRING, name, doc, 0.0, 0, def, 0.0, 0.0, NULL}
/* A STRING parameter whose value must be one of `choices` (a static NULL-terminated array of
 * strings, ABI 1.1): the host refuses any other value before create() runs. */
#define KP_CHOICE(name, doc, def, choices)                                                         \
  {sizeof(keel_param_decl), KEEL_PARAM_STRING, name, doc, 0.0, 0, def, 0.0, 0.0, choices}
#define KP_SCALAR(reduction, name, doc) {sizeof(keel_scalar_decl), reduction, name, doc}
#define KP_COUNT(array) ((uint32_t)(sizeof(array) / sizeof((array)[0])))

/* ---- Parameters ------------------------------------------------------------------------- */

/* One parameter's value as create() received it (or its declared default). */
typedef struct kp_value {
  double f;      /* FLOAT */
  int64_t i;     /* INT, BOOL (0 or 1) */
  const char *s; /* STRING: borrowed, valid during create() only */
} kp_value;

/* kp_read_params flag: every declared parameter is a STRING, and a value of another type or a
 * NULL string is reported as "parameter '<name>' must be a string" (the reward plugins). */
#define KP_STRINGS_ONLY 1u

/* Writes "a, b, c" (the `count` strings of `items`, or of decls' names when items is NULL)
 * into buf; never truncates a list that fits in `size`. */
static inline void kp_join(char *buf, size_t size, const char *const *items,
                           const keel_param_decl *decls, uint32_t count) {
  size_t used = 0;
  buf[0] = '\0';
  for (uint32_t k = 0; k < count && used < size; k++) {
    const char *item = items ? items[k] : decls[k].name;
    int w = snprintf(buf + used, size - used, "%s%s", k ? ", " : "", item);
    if (w < 0) break;
    used += (size_t)w;
  }
}

/* Fill values[j] with decls[j]'s default, then read create()'s parameters: walked by each
 * value's struct_size (== sizeof as the host compiled it), matched to a declaration by name
 * (a later value of the same name wins). Checks, in order, for each value: struct_size,
 * known name, declared type (KP_STRINGS_ONLY: "must be a string"), then FLOAT and INT within
 * [min_value, max_value], BOOL 0 or 1, STRING not NULL. KEEL_ERR_INVALID_ARGUMENT on failure. */
static inline keel_status kp_read_params(const keel_host *host, const char *plugin,
                                         const keel_param_decl *decls, uint32_t decl_count,
                                         const keel_params *params, kp_value *values,
                                         unsigned flags) {
  for (uint32_t j = 0; j < decl_count; j++) {
    values[j].f = decls[j].default_f;
    values[j].i = decls[j].default_i;
    values[j].s = decls[j].default_s;
  }
  uint32_t count = params ? params->count : 0;
  if (count > 0 && !params->values)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   "%s: %u parameter values but values is NULL", plugin, (unsigned)count);
  const char *cursor = count > 0 ? (const char *)params->values : NULL;
  for (uint32_t k = 0; k < count; k++) {
    const keel_param_value *v = (const keel_param_value *)(const void *)cursor;
    if (v->struct_size < sizeof(keel_param_value))
      return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                     "%s: parameter value %u has struct_size %u (< %u)", plugin, (unsigned)k,
                     (unsigned)v->struct_size, (unsigned)sizeof(keel_param_value));
    cursor += v->struct_size;
    uint32_t j = 0;
    while (j < decl_count && !(v->name && strcmp(v->name, decls[j].name) == 0)) j++;
    if (j == decl_count) {
      char valid[512];
      kp_join(valid, sizeof valid, NULL, decls, decl_count);
      return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: unknown parameter '%s' (valid: %s)",
                     plugin, v->name ? v->name : "(null)", valid);
    }
    const keel_param_decl *d = &decls[j];
    if (flags & KP_STRINGS_ONLY) {
      if (v->type != KEEL_PARAM_STRING || !v->s)
        return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: parameter '%s' must be a string",
                       plugin, d->name);
      values[j].s = v->s;
      continue;
    }
    if (v->type != d->type)
      return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                     "%s: parameter '%s' has type %u, expected %u", plugin, d->name,
                     (unsigned)v->type, (unsigned)d->type);
    switch (d->type) {
      case KEEL_PARAM_FLOAT:
        if (!(v->f >= d->min_value && v->f <= d->max_value))
          return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                         "%s: parameter '%s' = %g is outside [%g, %g]", plugin, d->name, v->f,
                         d->min_value, d->max_value);
        values[j].f = v->f;
        break;
      case KEEL_PARAM_STRING:
        if (!v->s)
          return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: parameter '%s' is NULL", plugin,
                         d->name);
        values[j].s = v->s;
        break;
      case KEEL_PARAM_INT:
        if (!((double)v->i >= d->min_value && (double)v->i <= d->max_value))
          return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                         "%s: parameter '%s' = %lld is outside [%g, %g]", plugin, d->name,
                         (long long)v->i, d->min_value, d->max_value);
        values[j].i = v->i;
        break;
      default: /* KEEL_PARAM_BOOL */
        if (v->i != 0 && v->i != 1)
          return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                         "%s: parameter '%s' = %lld is not 0 or 1", plugin, d->name,
                         (long long)v->i);
        values[j].i = v->i;
        break;
    }
  }
  return KEEL_OK;
}

/* create() of a plugin that declares no parameters: any value is an unknown parameter. */
static inline keel_status kp_no_params(const keel_host *host, const char *plugin,
                                       const keel_params *params) {
  uint32_t count = params ? params->count : 0;
  if (count > 0) {
    const keel_param_value *v = params->values;
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   "%s: unknown parameter '%s' (this plugin has no parameters)", plugin,
                   v && v->name ? v->name : "(null)");
  }
  return KEEL_OK;
}

/* Index of the declaration called `name`, or -1. */
static inline int kp_find(const keel_param_decl *decls, uint32_t decl_count, const char *name) {
  for (uint32_t j = 0; j < decl_count; j++)
    if (strcmp(decls[j].name, name) == 0) return (int)j;
  return -1;
}

/* *index = the position of `value` among the `count` strings of `choices`; otherwise
 * KEEL_ERR_INVALID_ARGUMENT "parameter '<name>' = '<value>' is not one of a, b, c". */
static inline keel_status kp_choice(const keel_host *host, const char *plugin, const char *name,
                                    const char *value, const char *const *choices,
                                    uint32_t count, int *index) {
  for (uint32_t k = 0; value && k < count; k++)
    if (strcmp(value, choices[k]) == 0) {
      *index = (int)k;
      return KEEL_OK;
    }
  char list[512];
  kp_join(list, sizeof list, choices, NULL, count);
  return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: parameter '%s' = '%s' is not one of %s",
                 plugin, name, value ? value : "(null)", list);
}

/* A malloc-ed copy of s (its length in *len), or NULL when out of memory. */
static inline char *kp_strdup(const char *s, size_t *len) {
  *len = strlen(s);
  char *copy = malloc(*len + 1);
  if (copy) memcpy(copy, s, *len + 1);
  return copy;
}

/* ---- Instances -------------------------------------------------------------------------- */

/* destroy() of an instance that owns nothing but its own malloc-ed block. */
static inline void kp_free_instance(void *instance) { free(instance); }

/* The instance of a plugin without parameters or per-run state: the host table only. */
typedef struct kp_host_only {
  const keel_host *host;
} kp_host_only;

/* create() of such a plugin: kp_no_params, then a kp_host_only (destroy: kp_free_instance). */
static inline keel_status kp_create_host_only(const keel_host *host, const char *plugin,
                                              const keel_params *params, void **out_instance) {
  keel_status s = kp_no_params(host, plugin, params);
  if (s) return s;
  kp_host_only *m = malloc(sizeof *m);
  if (!m) return kp_fail_oom(host, plugin);
  m->host = host;
  *out_instance = m;
  return KEEL_OK;
}

/* ---- Per-instance needs (ABI 1.1) ------------------------------------------------------- */

/* create(): record this instance's KEEL_OBJECTIVE_USES_* bits for the host (keel_params.
 * instance_flags). Returns 0 when the host's keel_params predates 1.1 (no slot: a 1.0 host
 * supplies no distribution terms, so a plugin needing them should refuse). */
static inline int kp_set_instance_flags(const keel_params *params, uint32_t flags) {
  if (!params || params->struct_size < offsetof(keel_params, instance_flags) + sizeof(uint32_t *) ||
      !params->instance_flags)
    return 0;
  *params->instance_flags = flags;
  return 1;
}

/* ---- Entry point ------------------------------------------------------------------------ */

/* The ABI rule: a host of version H.h loads this plugin (built as P.p) iff H == P and h >= p. */
static inline int kp_abi_accepts(uint32_t host_abi_major, uint32_t host_abi_minor) {
  /* A static const, not the macro: `unsigned < 0` would trip -Wtype-limits while MINOR is 0. */
  static const uint32_t built_minor = KEEL_ABI_MINOR;
  return host_abi_major == KEEL_ABI_MAJOR && host_abi_minor >= built_minor;
}

/* The descriptor's leading fields: struct_size, abi_major, abi_minor, kind (designated). */
#define KP_DESCRIPTOR_HEADER(kind_)                                                                \
  .struct_size = sizeof(keel_plugin), .abi_major = KEEL_ABI_MAJOR,                                 \
  .abi_minor = KEEL_ABI_MINOR, .kind = (kind_)

/* Defines the one exported symbol, returning &descriptor (NULL for an incompatible host). */
#define KP_DEFINE_ENTRY(descriptor)                                                                \
  KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major,                        \
                                                   uint32_t host_abi_minor);                       \
  KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major,                        \
                                                   uint32_t host_abi_minor) {                      \
    return kp_abi_accepts(host_abi_major, host_abi_minor) ? &(descriptor) : NULL;                  \
  }

#endif /* KEEL_PLUGINS_COMMON_PLUGIN_UTIL_H */
