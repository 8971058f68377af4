/* CBLAS shim — OpenBLAS's CBLAS interface (libopenblas-dev, found by pkg-config "openblas").
 * No stable API: Keel-internal. */
#ifndef KEEL_CBLAS_SHIM_H
#define KEEL_CBLAS_SHIM_H
#include <cblas.h>
#endif
