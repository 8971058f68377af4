// KeelVersion.swift — the version strings every command and record uses.
import KeelABI

public enum KeelVersion {
  public static let string = "0.1.0"
  public static var abi: String { "\(KEEL_ABI_MAJOR).\(KEEL_ABI_MINOR)" }
}
