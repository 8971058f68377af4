// JSONOutput.swift — the one JSONEncoder setup for the JSON Keel writes (summary, provenance,
// metrics lines, reports, --json outputs): sorted keys, slashes unescaped, and a non-finite
// number written as the string "nan" / "inf" / "-inf" instead of failing the whole write
// (metrics lines write null instead, in MetricsLine). Cache keys and checkpoint files keep their
// own encoders: their bytes must not change.
import Foundation

public enum JSONOutput {
  public static func encoder(pretty: Bool = false) -> JSONEncoder {
    let enc = JSONEncoder()
    enc.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
    enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return enc
  }
}
