// Communicator.swift — the ranks of a data-parallel run (docs/scaling.md). One process is a
// communicator of size 1 that never touches MPI, so `keel train` without `mpirun` behaves and
// performs exactly as a single process. Under `mpirun` (detected by Open MPI's / PMIx's
// environment) MPI is initialised and the collectives below go through Open MPI.
//   allreduceSum(floats | doubles)   every rank gets the sum (gradients, metric sums)
//   allreduceMax(ints)               agreement on flags (stop requested, skip this update)
//   allgatherv(doubles)              rank-ordered concatenation (rewards, lengths, records)
//   allgather(UInt64)                one value per rank (weight checksums)
// Every collective runs under a watchdog: a rank that waits longer than `timeout` seconds for
// the others (one died or hangs) prints which collective it was in and exits non-zero, so
// `mpirun` ends the job instead of hanging. Collective time and bytes are counted for the
// step's metrics (`time_allreduce`, `allreduce_bytes`).
import CMPI
import Foundation

public struct DistributedError: Error, CustomStringConvertible {
  public let message: String
  public var description: String { message }
}

public final class Communicator: @unchecked Sendable {
  public let rank: Int
  public let size: Int
  public let usesMPI: Bool
  public let host: String
  /// Seconds a collective may wait before this rank gives up (0: forever).
  public var timeout: Double = 300
  /// Seconds spent in collectives and bytes sent into them since creation.
  public private(set) var collectiveSeconds = 0.0
  public private(set) var collectiveBytes = 0
  private let watchdog = Watchdog()
  private var finalized = false

  /// A single process: size 1, no MPI.
  public static let single = Communicator(rank: 0, size: 1, usesMPI: false, host: "localhost")

  private init(rank: Int, size: Int, usesMPI: Bool, host: String) {
    self.rank = rank
    self.size = size
    self.usesMPI = usesMPI
    self.host = host
  }

  /// Started by `mpirun`/`srun` with PMIx: the environment says so.
  public static var launchedByMPI: Bool {
    let env = ProcessInfo.processInfo.environment
    return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil || env["PMI_RANK"] != nil
  }

  /// MPI when launched by `mpirun`, else `.single`.
  public static func fromEnvironment() throws -> Communicator {
    guard launchedByMPI else { return .single }
    let rc = cmpi_init()
    guard rc == 0 else { throw DistributedError(message: "MPI_Init failed: \(errorString(rc))") }
    var name = [CChar](repeating: 0, count: 256)
    _ = cmpi_processor_name(&name, Int32(name.count))
    let comm = Communicator(rank: Int(cmpi_rank()), size: Int(cmpi_size()), usesMPI: true,
                            host: String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    comm.watchdog.start(rank: comm.rank)
    return comm
  }

  public var isRoot: Bool { rank == 0 }

  /// The contiguous share [lo, hi) of `count` items this rank owns (sizes differ by at most one).
  public func share(of count: Int) -> Range<Int> { Self.share(of: count, rank: rank, size: size) }

  public static func share(of count: Int, rank: Int, size: Int) -> Range<Int> {
    (rank * count / size)..<((rank + 1) * count / size)
  }

  // MARK: collectives (no-ops at size 1)

  public func allreduceSum(_ p: UnsafeMutablePointer<Float>, count: Int, what: String) throws {
    guard size > 1 else { return }
    try collective(what, bytes: count * 4) {
      var done = 0
      while done < count {  // MPI counts are Int32
        let n = min(count - done, Int(Int32.max))
        let rc = cmpi_allreduce_sum_float(p + done, Int32(n))
        if rc != 0 { return rc }
        done += n
      }
      return 0
    }
  }

  public func allreduceSum(_ xs: [Double], what: String) throws -> [Double] {
    guard size > 1 else { return xs }
    var out = xs
    try collective(what, bytes: xs.count * 8) { cmpi_allreduce_sum_double(&out, Int32(out.count)) }
    return out
  }

  public func allreduceMax(_ xs: [Int32], what: String) throws -> [Int32] {
    guard size > 1 else { return xs }
    var out = xs
    try collective(what, bytes: xs.count * 4) { cmpi_allreduce_max_int(&out, Int32(out.count)) }
    return out
  }

  /// Every rank's `local`, concatenated in rank order.
  public func allgatherv(_ local: [Double], what: String) throws -> [Double] {
    guard size > 1 else { return local }
    var counts = [Int32](repeating: 0, count: size)
    try collective(what + " (counts)", bytes: 4) { cmpi_allgather_int(Int32(local.count), &counts) }
    var displs = [Int32](repeating: 0, count: size)
    for r in 1..<size { displs[r] = displs[r - 1] + counts[r - 1] }
    var out = [Double](repeating: 0, count: Int(displs[size - 1] + counts[size - 1]))
    try collective(what, bytes: local.count * 8) {
      local.withUnsafeBufferPointer { cmpi_allgatherv_double($0.baseAddress, Int32(local.count), &out, counts, displs) }
    }
    return out
  }

  public func allgather(_ value: UInt64, what: String) throws -> [UInt64] {
    guard size > 1 else { return [value] }
    var out = [UInt64](repeating: 0, count: size)
    try collective(what, bytes: 8) {
      out.withUnsafeMutableBufferPointer { b in
        b.baseAddress!.withMemoryRebound(to: CUnsignedLongLong.self, capacity: size) { cmpi_allgather_u64(CUnsignedLongLong(value), $0) }
      }
    }
    return out
  }

  /// Wait for every rank; `timeout` nil uses the communicator's, 0 waits forever. `patient`:
  /// poll every 20 ms instead of spinning (for long waits, e.g. while rank 0 makes the cold
  /// start, so a waiting rank leaves its core to the others).
  public func barrier(what: String, timeout: Double? = nil, patient: Bool = false) throws {
    guard size > 1 else { return }
    try collective(what, bytes: 0, timeout: timeout) {
      guard patient else { return cmpi_barrier() }
      var request = cmpi_request_null()
      var rc = cmpi_ibarrier(&request)
      var done: Int32 = 0
      while rc == 0 && done == 0 {
        rc = cmpi_test(&request, &done)
        if done == 0 { usleep(20_000) }
      }
      return rc
    }
  }

  /// Ends the job now: every rank of it exits with `code`.
  public func abort(code: Int32) -> Never {
    if usesMPI { cmpi_abort(code) }
    exit(code)
  }

  public func finalize() {
    guard usesMPI, !finalized else { return }
    finalized = true
    watchdog.stop()
    _ = cmpi_finalize()
  }

  private func collective(_ what: String, bytes: Int, timeout: Double? = nil, _ body: () -> Int32) throws {
    let t0 = DispatchTime.now().uptimeNanoseconds
    watchdog.enter(what, timeout: timeout ?? self.timeout)
    let rc = body()
    watchdog.leave()
    collectiveSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
    collectiveBytes += bytes
    guard rc == 0 else {
      throw DistributedError(message: "rank \(rank) of \(size): MPI \(what) failed: \(Self.errorString(rc))")
    }
  }

  static func errorString(_ rc: Int32) -> String {
    var buf = [CChar](repeating: 0, count: 512)
    cmpi_error_string(rc, &buf, Int32(buf.count))
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + " (code \(rc))"
  }
}

/// A thread that ends the process when a collective waits past its deadline.
final class Watchdog: @unchecked Sendable {
  private let lock = NSLock()
  private var what = ""
  private var deadline: UInt64 = 0  // 0: not in a collective
  private var since: UInt64 = 0
  private var running = false
  private var rank = 0

  func start(rank: Int) {
    self.rank = rank
    running = true
    let thread = Thread { [self] in
      while true {
        Thread.sleep(forTimeInterval: 0.25)
        lock.lock()
        let (w, d, s, r) = (what, deadline, since, running)
        lock.unlock()
        if !r { return }
        let now = DispatchTime.now().uptimeNanoseconds
        if d != 0 && now > d {
          let waited = Double(now - s) * 1e-9
          let msg = String(format: "\nerror: keel rank %d: waited %.0f s in MPI %@ without an answer from the other ranks (one died or hangs); exiting\n", rank, waited, w)
          FileHandle.standardError.write(Data(msg.utf8))
          _exit(3)
        }
      }
    }
    thread.name = "keel-mpi-watchdog"
    thread.start()
  }

  func enter(_ what: String, timeout: Double) {
    let now = DispatchTime.now().uptimeNanoseconds
    lock.lock()
    self.what = what
    since = now
    deadline = timeout > 0 ? now + UInt64(min(timeout, 1e9) * 1e9) : 0
    lock.unlock()
  }

  func leave() {
    lock.lock()
    deadline = 0
    lock.unlock()
  }

  func stop() {
    lock.lock()
    running = false
    lock.unlock()
  }
}
