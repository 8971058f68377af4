// BatchFile.swift — hand-written batches for `keel plugins eval` (docs/plugin-guide.md):
//   objective: {"responses": [{"group": 0, "advantage": 1.0, "logp": [..], "logp_old": [..],
//               "logp_rollout": [..], "logp_ref"?: [..], "mask"?: [1, 0, ..], "tokens"?: ["4", "2"],
//               ABI 1.1, per token: "entropy"?, "kl_ref"?, "logp_teacher"?, "kl_teacher"?: [..],
//               "logits"?: [[z_0 … z_{V-1}], ..] (one row per token, z = logits / T)}],
//               "total_sequences"?: n, "total_tokens"?: n, "max_response_tokens"?: n}
//   An optional array given for one response must be given for every response.
//   baseline:  {"responses": [{"reward": 1.0, "group": 0, "length": 3}]}
//   reward:    {"samples": [{"prompt": "..", "response": "..", "reference": "..", "task"?: "..",
//               "response_ids"?: [..], "extra"?: {..}, "truncated"?: false}]}
// A bad file is an error naming the field and the response index.
import Foundation

public enum BatchFile {
  static func fail(_ path: String, _ m: String) -> PluginError { .invalidInput("\(path): \(m)") }

  static func root(_ path: String) throws -> [String: Any] {
    guard let data = FileManager.default.contents(atPath: path) else { throw fail(path, "cannot read the file") }
    guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
      throw fail(path, "not a JSON object (NaN and Infinity are not JSON: a non-finite input cannot be written here)")
    }
    return obj
  }

  static func list(_ path: String, _ obj: [String: Any], _ key: String) throws -> [[String: Any]] {
    guard let raw = obj[key] else { throw fail(path, "field '\(key)' is missing") }
    guard let items = raw as? [Any] else { throw fail(path, "field '\(key)' must be a list") }
    return try items.enumerated().map { i, x in
      guard let d = x as? [String: Any] else { throw fail(path, "\(key)[\(i)] must be an object") }
      return d
    }
  }

  static func number(_ path: String, _ d: [String: Any], _ key: String, _ at: String, default def: Double? = nil) throws -> Double {
    guard let v = d[key] else {
      if let def { return def }
      throw fail(path, "\(at).\(key) is missing")
    }
    guard let n = v as? NSNumber, !(v is String) else { throw fail(path, "\(at).\(key) must be a number") }
    guard n.doubleValue.isFinite else { throw fail(path, "\(at).\(key) is not a finite number") }
    return n.doubleValue
  }

  /// A whole number that fits an Int64 with room (|x| ≤ 2^53): group ids, lengths, counts.
  static func integer(_ path: String, _ d: [String: Any], _ key: String, _ at: String, default def: Int64? = nil, min: Int64 = Int64.min) throws -> Int64 {
    if d[key] == nil, let def { return def }
    let x = try number(path, d, key, at)
    guard x == x.rounded(), abs(x) <= 9_007_199_254_740_992 else { throw fail(path, "\(at).\(key) must be a whole number of at most 2^53 in size, got \(x)") }
    guard Int64(x) >= min else { throw fail(path, "\(at).\(key) must be at least \(min), got \(Int64(x))") }
    return Int64(x)
  }

  /// A number that float32 holds (beyond ±3.4e38 it would silently become ±inf); `what` names it.
  static func float32(_ path: String, _ x: Double, _ what: String) throws -> Float {
    guard abs(x) <= Double(Float.greatestFiniteMagnitude) else { throw fail(path, "\(what) = \(x) is beyond float32's range") }
    return Float(x)
  }
  static func float32(_ path: String, _ d: [String: Any], _ key: String, _ at: String) throws -> Float {
    try float32(path, try number(path, d, key, at), "\(at).\(key)")
  }

  static func floats(_ path: String, _ d: [String: Any], _ key: String, _ at: String, count: Int? = nil) throws -> [Float]? {
    guard let v = d[key] else { return nil }
    guard let xs = v as? [Any] else { throw fail(path, "\(at).\(key) must be a list of numbers") }
    let out: [Float] = try xs.enumerated().map { j, x in
      guard let n = x as? NSNumber, !(x is String) else { throw fail(path, "\(at).\(key)[\(j)] must be a number") }
      guard n.doubleValue.isFinite else { throw fail(path, "\(at).\(key)[\(j)] is not a finite number") }
      return try float32(path, n.doubleValue, "\(at).\(key)[\(j)]")
    }
    if let count, out.count != count { throw fail(path, "\(at).\(key) has \(out.count) entries but logp has \(count)") }
    return out
  }

  /// An objective batch and the token labels (for display).
  public static func objective(_ path: String) throws -> (ObjectiveBatch, [[String]]) {
    let obj = try root(path)
    let rs = try list(path, obj, "responses")
    var rows: [(group: Int64, advantage: Float, logp: [Float], logpOld: [Float], logpRollout: [Float], mask: [UInt8])] = []
    var refs: [[Float]] = [], labels: [[String]] = []
    var anyRef = false
    let termKeys = ["entropy", "kl_ref", "logp_teacher", "kl_teacher"]
    var terms: [String: [Float]] = [:], logits: [Float] = [], vocab: Int? = nil
    var logitsGiven: Bool? = nil  // by the first response with tokens: every later one must agree
    for (i, r) in rs.enumerated() {
      let at = "responses[\(i)]"
      guard let logp = try floats(path, r, "logp", at) else { throw fail(path, "\(at).logp is missing") }
      guard let old = try floats(path, r, "logp_old", at, count: logp.count) else { throw fail(path, "\(at).logp_old is missing") }
      guard let roll = try floats(path, r, "logp_rollout", at, count: logp.count) else { throw fail(path, "\(at).logp_rollout is missing") }
      for key in termKeys {
        let xs = try floats(path, r, key, at, count: logp.count)
        guard (xs != nil) == (i == 0 ? xs != nil : terms[key] != nil) else {
          throw fail(path, "\(at).\(key) is \(xs == nil ? "missing" : "given") but responses[0].\(key) is \(xs == nil ? "given" : "missing"): give it for every response or none")
        }
        if let xs { terms[key, default: []] += xs }
      }
      if let rowsRaw = r["logits"] {
        guard let rows = rowsRaw as? [Any], rows.count == logp.count else { throw fail(path, "\(at).logits must be a list of \(logp.count) rows (one per token)") }
        if logitsGiven == false, !logp.isEmpty {
          throw fail(path, "\(at).logits is given but an earlier response with tokens has none: give it for every response or none")
        }
        if !logp.isEmpty { logitsGiven = true }
        for (j, row) in rows.enumerated() {
          guard let xs = try floats(path, ["row": row], "row", "\(at).logits[\(j)]"), !xs.isEmpty else { throw fail(path, "\(at).logits[\(j)] must be a non-empty list of numbers") }
          guard vocab == nil || vocab == xs.count else { throw fail(path, "\(at).logits[\(j)] has \(xs.count) entries but earlier rows have \(vocab!) (the vocabulary size)") }
          vocab = xs.count
          logits += xs
        }
      } else if !logp.isEmpty {
        if logitsGiven == true { throw fail(path, "\(at).logits is missing but earlier responses give logits: give it for every response or none") }
        logitsGiven = false
      }
      let ref = try floats(path, r, "logp_ref", at, count: logp.count)
      anyRef = anyRef || ref != nil
      refs.append(ref ?? logp)
      let maskF = try floats(path, r, "mask", at, count: logp.count) ?? logp.map { _ in 1 }
      guard maskF.allSatisfy({ $0 == 0 || $0 == 1 }) else { throw fail(path, "\(at).mask entries must be 0 or 1") }
      let adv = try float32(path, r, "advantage", at)
      let group = try integer(path, r, "group", at, default: Int64(i))
      rows.append((group, adv, logp, old, roll, maskF.map { UInt8($0) }))
      labels.append((r["tokens"] as? [Any])?.map { "\($0)" } ?? logp.indices.map { "t\($0)" })
    }
    var b = ObjectiveBatch(responses: rows, logpRef: anyRef ? refs : nil)
    b.entropy = terms["entropy"]
    b.klRef = terms["kl_ref"]
    b.logpTeacher = terms["logp_teacher"]
    b.klTeacher = terms["kl_teacher"]
    if let vocab {
      b.vocabSize = Int64(vocab)
      b.logits = logits
    }
    if obj["total_sequences"] != nil { b.totalSequences = try number(path, obj, "total_sequences", "batch") }
    if obj["total_tokens"] != nil { b.totalTokens = try number(path, obj, "total_tokens", "batch") }
    if obj["max_response_tokens"] != nil { b.maxResponseTokens = try integer(path, obj, "max_response_tokens", "batch", min: 0) }
    try b.validate()
    return (b, labels)
  }

  public static func baseline(_ path: String) throws -> (rewards: [Float], groups: [Int64], lengths: [Int64]) {
    let rs = try list(path, try root(path), "responses")
    var r: [Float] = [], g: [Int64] = [], l: [Int64] = []
    for (i, x) in rs.enumerated() {
      let at = "responses[\(i)]"
      r.append(try float32(path, x, "reward", at))
      g.append(try integer(path, x, "group", at))
      l.append(try integer(path, x, "length", at, default: 1, min: 0))
    }
    return (r, g, l)
  }

  public static func reward(_ path: String) throws -> [RewardSample] {
    let ss = try list(path, try root(path), "samples")
    return try ss.enumerated().map { i, s in
      let at = "samples[\(i)]"
      func text(_ k: String, required: Bool) throws -> String {
        guard let v = s[k] else { if required { throw fail(path, "\(at).\(k) is missing") }; return "" }
        guard let t = v as? String else { throw fail(path, "\(at).\(k) must be a string") }
        return t
      }
      let ids: [Int32] = try (s["response_ids"] as? [Any] ?? []).enumerated().map { j, x in
        guard let n = x as? Int, let v = Int32(exactly: n) else { throw fail(path, "\(at).response_ids[\(j)] must be an integer") }
        return v
      }
      var extra = "{}"
      if let e = s["extra"] {
        guard e is [String: Any] else { throw fail(path, "\(at).extra must be an object") }
        extra = String(decoding: try JSONSerialization.data(withJSONObject: e, options: [.sortedKeys]), as: UTF8.self)
      }
      return RewardSample(prompt: try text("prompt", required: true), response: try text("response", required: true), responseIds: ids,
                          reference: try text("reference", required: true), task: try text("task", required: false),
                          extraJSON: extra, truncated: (s["truncated"] as? Bool) ?? false)
    }
  }

  /// Starting batches for `keel plugins eval --example KIND`. The objective example is the
  /// hand-computed MiniRL case of the tests (four masking cases, the TIS cap, a masked token).
  public static func example(_ kind: PluginKind) -> String {
    switch kind {
    case .objective:
      return """
        {
          "responses": [
            {"group": 0, "advantage": 1.0, "tokens": ["4", "2"], "logp": [-0.5, -1.0], "logp_old": [-1.0, -0.5], "logp_rollout": [-0.6, -1.1]},
            {"group": 0, "advantage": -1.0, "tokens": ["4", "3"], "logp": [-1.0, -0.5], "logp_old": [-0.5, -1.0], "logp_rollout": [-0.9, -0.4]},
            {"group": 1, "advantage": 0.5, "tokens": ["7", "<eos>"], "logp": [-0.1, -0.7], "logp_old": [-0.1, -0.7], "logp_rollout": [-3.0, -0.7], "mask": [1, 0]},
            {"group": 1, "advantage": -0.5, "tokens": ["8"], "logp": [-2.0], "logp_old": [-2.0], "logp_rollout": [-2.0]}
          ]
        }
        """
    case .baseline:
      return """
        {
          "responses": [
            {"reward": 1.0, "group": 0, "length": 3}, {"reward": 0.0, "group": 0, "length": 4},
            {"reward": 0.0, "group": 0, "length": 2}, {"reward": 1.0, "group": 0, "length": 3},
            {"reward": 1.0, "group": 1, "length": 2}, {"reward": 1.0, "group": 1, "length": 2}
          ]
        }
        """
    case .reward:
      return """
        {
          "samples": [
            {"prompt": "12+30=", "response": "42", "reference": "42", "task": "addition", "response_ids": [7, 5]},
            {"prompt": "12+30=", "response": "41", "reference": "42", "task": "addition", "response_ids": [7, 4]},
            {"prompt": "9+9=", "response": " 18. ", "reference": "18"}
          ]
        }
        """
    }
  }
}
