/* CFFI shim — libffi for Swift 6. No stable API: Keel-internal.
 * libffi's ffi_type_* are mutable globals, which Swift 6 rejects; these accessors wrap them. */
#ifndef KEEL_CFFI_SHIM_H
#define KEEL_CFFI_SHIM_H
#include <ffi.h>
static inline ffi_type *cffi_type_void(void) { return &ffi_type_void; }
static inline ffi_type *cffi_type_pointer(void) { return &ffi_type_pointer; }
static inline ffi_type *cffi_type_sint32(void) { return &ffi_type_sint32; }
static inline ffi_type *cffi_type_sint64(void) { return &ffi_type_sint64; }
static inline ffi_type *cffi_type_float(void) { return &ffi_type_float; }
static inline ffi_type *cffi_type_double(void) { return &ffi_type_double; }
static inline ffi_abi cffi_default_abi(void) { return FFI_DEFAULT_ABI; }
#endif
