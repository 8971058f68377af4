// Buffer.swift — owned, zero-initialised, fixed-size numeric storage with a stable pointer,
// for kernels that take raw pointers (Swift arrays move; these do not).
public final class Buffer<T: Numeric>: @unchecked Sendable {
  public let p: UnsafeMutablePointer<T>
  public let count: Int
  public init(_ count: Int) {
    self.count = count
    p = .allocate(capacity: max(count, 1))
    p.initialize(repeating: 0, count: max(count, 1))
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
