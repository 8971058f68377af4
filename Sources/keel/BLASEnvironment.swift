// BLASEnvironment.swift — OpenBLAS 0.3.21 (Debian 12) does not recognise some of the CPUs
// these machines have (e.g. Intel family 6 model 207) and falls back to its SSE3 "Prescott"
// kernels, a 5× slowdown. Keel builds for AVX2 + FMA (x86-64-v3) and never assumes AVX-512,
// so, when the user has not chosen, keel asks OpenBLAS for its AVX2 kernels ("Haswell") on a
// CPU that has AVX2 and FMA. OpenBLAS reads OPENBLAS_CORETYPE when it loads, before main(),
// so keel sets it and re-executes itself once. KEEL_NO_BLAS_REEXEC=1 turns this off.
#if canImport(Glibc)
import Glibc
#endif
import KeelModel

enum BLASEnvironment {
  /// Set OPENBLAS_CORETYPE=Haswell and re-exec, once, when unset on an AVX2+FMA CPU.
  static func ensureCoreType() {
    guard getenv("OPENBLAS_CORETYPE") == nil, getenv("KEEL_NO_BLAS_REEXEC") == nil,
          CPUInfo.flags.isSuperset(of: ["avx2", "fma"]) else { return }
    setenv("OPENBLAS_CORETYPE", "Haswell", 1)
    setenv("KEEL_NO_BLAS_REEXEC", "1", 1)  // never loop
    let args = CommandLine.arguments
    var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
    execv("/proc/self/exe", &cargs)
    // execv returned: carry on with the detected kernels
  }
}
