// CPUInfo.swift — what /proc/cpuinfo says about this machine's CPU: the model name for
// provenance records, and its feature flags (keel picks OpenBLAS kernels by them; Keel's own
// kernels are built for AVX2 + FMA + F16C and never assume AVX-512).
import Foundation

public enum CPUInfo {
  /// The value of the first `name : value` line of /proc/cpuinfo ("unknown" if absent).
  public static func field(_ name: String) -> String {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
    for line in text.split(separator: "\n") where line.hasPrefix(name) {
      return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
    }
    return "unknown"
  }

  /// The feature flags of the first CPU.
  public static var flags: Set<String> { Set(field("flags").split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)) }
}
