// ELFSymbols.swift — does a shared library export a symbol? Read from its ELF64 little-endian
// dynamic symbol table (.dynsym / .dynstr) with every offset bounds-checked against the file,
// without dlopen: plugin discovery scans directories, and loading a library runs its code.
import Foundation

enum ELFSymbols {
  /// True when `path` is an ELF64 LE file whose .dynsym defines `name` (not an undefined import).
  static func exports(_ name: String, path: String) -> Bool {
    guard let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped), data.count >= 64 else { return false }
    return data.withUnsafeBytes { raw -> Bool in
      let n = raw.count
      func u16(_ o: Int) -> Int? { o >= 0 && o + 2 <= n ? Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt16.self))) : nil }
      func u32(_ o: Int) -> Int? { o >= 0 && o + 4 <= n ? Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt32.self))) : nil }
      func u64(_ o: Int) -> Int? {
        guard o >= 0 && o + 8 <= n else { return nil }
        let v = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt64.self))
        return v <= UInt64(Int.max) ? Int(v) : nil
      }
      guard raw[0] == 0x7F, raw[1] == 0x45, raw[2] == 0x4C, raw[3] == 0x46, raw[4] == 2, raw[5] == 1 else { return false }
      guard let shoff = u64(0x28), let shentsize = u16(0x3A), let shnum = u16(0x3C), shentsize >= 64 else { return false }
      func section(_ i: Int) -> (type: Int, offset: Int, size: Int, link: Int, entsize: Int)? {
        let base = shoff + i * shentsize
        guard let t = u32(base + 4), let off = u64(base + 0x18), let size = u64(base + 0x20), let link = u32(base + 0x28),
              let ent = u64(base + 0x38), off <= n, size <= n - off else { return nil }
        return (t, off, size, link, ent)
      }
      let target = Array(name.utf8)
      for i in 0..<shnum {
        guard let s = section(i), s.type == 11 /* SHT_DYNSYM */, s.entsize >= 24, let str = section(s.link) else { continue }
        for k in 0..<(s.size / s.entsize) {
          let sym = s.offset + k * s.entsize
          guard let nameOff = u32(sym), let shndx = u16(sym + 6), shndx != 0, nameOff < str.size else { continue }
          let start = str.offset + nameOff
          guard start + target.count < str.offset + str.size else { continue }
          if raw[start + target.count] == 0 && (0..<target.count).allSatisfy({ raw[start + $0] == target[$0] }) { return true }
        }
      }
      return false
    }
  }
}
