// Buffer.swift — owned, zero-initialised, fixed-size numeric storage with a stable pointer,
// for kernels that take raw pointers (Swift arrays move; these do not).
public final class Buffer<T: Numeric>: @unchecked Sendable {
  public let p: UnsafeMutablePointer<T>
  public let count: Int
  public init(_ count: Int) {
    _ = allocatorTuned
    self.count = count
    p = .allocate(capacity: max(count, 1))
    p.initialize(repeating: 0, count: max(count, 1))
  }
  /// Storage whose every element the caller writes before reading (kernel outputs that
  /// overwrite): skips the zero fill, which was ~5% of a decode step.
  public init(uninitialized count: Int) {
    _ = allocatorTuned
    self.count = count
    p = .allocate(capacity: max(count, 1))
  }
  public convenience init(_ values: [T]) {
    self.init(values.count)
    values.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: values.count) }
  }
  deinit { p.deallocate() }
  public subscript(i: Int) -> T {
    get { p[i] }
    set { p[i] = newValue }
  }
  public var array: [T] { Array(UnsafeBufferPointer(start: p, count: count)) }
  public func zero() { p.update(repeating: 0, count: count) }
  public func copy(from other: Buffer<T>) { p.update(from: other.p, count: min(count, other.count)) }
}
public typealias FloatBuffer = Buffer<Float>

#if canImport(Glibc)
/// glibc's mallopt (malloc.h is not in Swift's Glibc module); M_TRIM_THRESHOLD = -1 and
/// M_MMAP_THRESHOLD = -3 in glibc's malloc.h.
@_silgen_name("mallopt") private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
private let M_TRIM_THRESHOLD: Int32 = -1, M_MMAP_THRESHOLD: Int32 = -3
/// Activations are allocated per pass and freed at its end. glibc serves blocks above 128 KB
/// with mmap and returns them with munmap, so every pass paid page faults on fresh zero pages
/// (measured: ~10% of a training step in the kernel). Keeping blocks up to 32 MB in the heap
/// (and not trimming it) reuses the same pages from pass to pass.
let allocatorTuned: Bool = {
  _ = glibcMallopt(M_MMAP_THRESHOLD, 32 << 20)
  _ = glibcMallopt(M_TRIM_THRESHOLD, 256 << 20)
  return true
}()
#else
let allocatorTuned = true
#endif
