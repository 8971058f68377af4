/* CMPI shim — Open MPI for Swift. Keel-internal; used only by Sources/KeelDistributed.
 * Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE …) are macros over
 * globals, which Swift cannot import; these static inline functions wrap each call Keel makes.
 * Every function returns the MPI error code (MPI_SUCCESS = 0) unless stated. */
#ifndef KEEL_CMPI_SHIM_H
#define KEEL_CMPI_SHIM_H
#include <mpi.h>

/* MPI_Init_thread with MPI_THREAD_FUNNELED: only the main thread calls MPI (Keel's compute
 * threads never do); errors return to the caller instead of aborting the job. */
static inline int cmpi_init(void) {
  int provided = 0;
  int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
  if (rc == MPI_SUCCESS) MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  return rc;
}
static inline int cmpi_initialized(void) { int flag = 0; MPI_Initialized(&flag); return flag; }
static inline int cmpi_finalize(void) { return MPI_Finalize(); }
static inline int cmpi_rank(void) { int r = 0; MPI_Comm_rank(MPI_COMM_WORLD, &r); return r; }
static inline int cmpi_size(void) { int s = 1; MPI_Comm_size(MPI_COMM_WORLD, &s); return s; }
static inline void cmpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
static inline int cmpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }
/* A barrier that does not spin: start it, then poll (the caller sleeps between polls).
 * Each request handle lives in *request (an opaque MPI_Request). */
static inline int cmpi_ibarrier(MPI_Request *request) { return MPI_Ibarrier(MPI_COMM_WORLD, request); }
static inline int cmpi_test(MPI_Request *request, int *done) { return MPI_Test(request, done, MPI_STATUS_IGNORE); }
static inline MPI_Request cmpi_request_null(void) { return MPI_REQUEST_NULL; }

/* In-place sums over all ranks; every rank receives the result. */
static inline int cmpi_allreduce_sum_float(float *buf, int count) {
  return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static inline int cmpi_allreduce_sum_double(double *buf, int count) {
  return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}
static inline int cmpi_allreduce_max_int(int *buf, int count) {
  return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
}
/* recv[r] = rank r's value. */
static inline int cmpi_allgather_u64(unsigned long long value, unsigned long long *recv) {
  return MPI_Allgather(&value, 1, MPI_UNSIGNED_LONG_LONG, recv, 1, MPI_UNSIGNED_LONG_LONG, MPI_COMM_WORLD);
}
static inline int cmpi_allgather_int(int value, int *recv) {
  return MPI_Allgather(&value, 1, MPI_INT, recv, 1, MPI_INT, MPI_COMM_WORLD);
}
/* Rank r's `counts[r]` doubles land at recv + displs[r], in rank order. */
static inline int cmpi_allgatherv_double(const double *send, int count, double *recv, const int *counts, const int *displs) {
  return MPI_Allgatherv(send, count, MPI_DOUBLE, recv, counts, displs, MPI_DOUBLE, MPI_COMM_WORLD);
}
/* The message of an MPI error code, into buf (NUL-terminated). */
static inline void cmpi_error_string(int code, char *buf, int size) {
  int len = 0;
  char text[MPI_MAX_ERROR_STRING];
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
  if (len >= size) len = size - 1;
  for (int i = 0; i < len; i++) buf[i] = text[i];
  buf[len] = 0;
}
static inline int cmpi_processor_name(char *buf, int size) {
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  int rc = MPI_Get_processor_name(name, &len);
  if (len >= size) len = size - 1;
  for (int i = 0; i < len; i++) buf[i] = name[i];
  buf[len] = 0;
  return rc;
}
#endif
