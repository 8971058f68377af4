// Checksum.swift — a 64-bit checksum of a float buffer's bits, to assert cheaply that every
// rank holds identical weights (distributed.check_every). Not cryptographic: any changed bit
// changes it (each 32-bit word is mixed in order, splitmix-style).
public enum WeightChecksum {
  public static func of(_ p: UnsafePointer<Float>, count: Int) -> UInt64 {
    var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(count)
    p.withMemoryRebound(to: UInt32.self, capacity: count) { w in
      for i in 0..<count {
        h = (h ^ UInt64(w[i])) &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 31
      }
    }
    return h
  }

  public static func hex(_ h: UInt64) -> String {
    let s = String(h, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
  }
}
