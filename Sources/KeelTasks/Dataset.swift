// Dataset.swift — where problems come from: a procedural task (train/eval split) or a user's
// JSONL file, one object per line: {"prompt": …, "answer": …, "task"?: …, any other fields}
// (field names configurable), held out by the split hash or given as a second file.
// Both split by the same well-mixed prompt hash (TaskSplit.split(of:)): a JSONL row hashed to
// the held-out split is held out, every other row trains. Nothing depends on the file's order
// (a file sorted by operand or topic gives the same kind of batches and held-out set as a
// shuffled one): when more rows hash to the held-out side than evalCount, the held-out set is
// the evalCount with the smallest split hashes (the rest train), and the training rows are
// drawn in a fresh seeded permutation per epoch.
// The other fields are passed to reward plugins as the row's extra JSON; `task` selects the
// reward for the row. A bad row is an error naming the file, the line and the field.
import Foundation
import KeelRandom

public struct Dataset: Sendable {
  public let name: String
  public let train: [Problem]?
  public let eval: [Problem]
  public let split: TaskSplit?
  public let answerMarker: String
  /// Seeds the JSONL training order.
  public let seed: UInt64

  /// A procedural task: problems on demand for training, a fixed held-out set for eval.
  /// `marker`: the final-answer marker when the config sets one (nil: the task's own).
  public init(task: any TaskGenerator, seed: UInt64, evalCount: Int, marker: String? = nil) throws {
    name = task.name
    split = TaskSplit(generator: task, seed: seed)
    try split!.checkPopulated()
    train = nil
    eval = split!.evalSet(count: evalCount)
    answerMarker = marker ?? task.answerMarker
    self.seed = seed
  }

  /// The problems of the set to hold out, at most `count`, independent of the file's order: the
  /// ones with the smallest split hashes (ties: file order); the rest are returned too.
  public static func sample(_ rows: [Problem], count: Int) -> (chosen: [Problem], rest: [Problem]) {
    guard rows.count > count else { return (rows, []) }
    let keys = rows.map { TaskSplit.splitHash($0.prompt) }
    let order = rows.indices.sorted { (keys[$0], $0) < (keys[$1], $1) }
    let chosen = Set(order.prefix(count))
    return (rows.indices.filter { chosen.contains($0) }.map { rows[$0] }, rows.indices.filter { !chosen.contains($0) }.map { rows[$0] })
  }

  /// JSONL: rows whose prompt hashes to the held-out split are held out (up to `evalCount`,
  /// chosen by `sample`; the others train), or, with `evalPath`, the held-out rows are that
  /// file's (up to `evalCount`, chosen the same way) and every row of `path` trains — a prompt in
  /// both files is an error (it would be trained on and judged on).
  /// `marker`: the final-answer marker that evaluation (and the reward, unless it sets its own) uses.
  /// `seed`: the training order (a fresh permutation per epoch).
  public init(jsonl path: String, evalPath: String? = nil, evalCount: Int, marker: String = "", fields: JSONLFields = .init(),
              seed: UInt64 = 1) throws {
    let rows = try Self.rows(path, fields: fields)
    var train: [Problem] = [], eval: [Problem] = []
    if let evalPath {
      train = rows
      eval = Self.sample(try Self.rows(evalPath, fields: fields), count: evalCount).chosen
      let trained = Set(train.map { Array($0.prompt.utf8) })
      let shared = eval.filter { trained.contains(Array($0.prompt.utf8)) }
      if let first = shared.first {
        throw TaskError.invalid("dataset \(evalPath): \(shared.count) held-out prompt(s) also appear in the training file \(path) (e.g. \"\(first.prompt)\"): a held-out set must not be trained on")
      }
    } else {
      guard rows.count >= 2 else { throw TaskError.invalid("dataset \(path): needs at least 2 rows, found \(rows.count)") }
      var heldSide: [Problem] = []
      for r in rows { if TaskSplit.split(of: r.prompt) == .eval { heldSide.append(r) } else { train.append(r) } }
      let held = Self.sample(heldSide, count: evalCount)
      eval = held.chosen
      train += held.rest
      if eval.isEmpty { eval.append(train.removeLast()) }
    }
    name = (path as NSString).lastPathComponent
    self.train = train
    self.eval = eval
    self.split = nil
    answerMarker = marker
    self.seed = seed
  }

  /// A JSONL file's rows: `fields.prompt` (a string) and `fields.answer` (any JSON value, as
  /// text) are required; `fields.task` selects the reward for the row; every other field is the
  /// row's extra JSON for the reward plugins.
  public static func rows(_ path: String, fields: JSONLFields) throws -> [Problem] {
    let text = try TextFile.read(path, what: "dataset")
    var rows: [Problem] = []
    for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let trimmed = line.trimmingCharacters(in: .whitespaces)
      if trimmed.isEmpty { continue }
      guard let obj = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
        throw TaskError.invalid("dataset \(path):\(n + 1): not a JSON object")
      }
      guard let prompt = obj[fields.prompt] as? String else { throw TaskError.invalid("dataset \(path):\(n + 1): field '\(fields.prompt)' (a string) is missing") }
      guard let answer = obj[fields.answer].map({ "\($0)" }) else { throw TaskError.invalid("dataset \(path):\(n + 1): field '\(fields.answer)' is missing") }
      let task = obj[fields.task] as? String ?? "jsonl"
      var extra = obj
      for k in [fields.prompt, fields.answer, fields.task] { extra.removeValue(forKey: k) }
      let extraJSON = String(decoding: try JSONSerialization.data(withJSONObject: extra, options: [.sortedKeys]), as: UTF8.self)
      var problem = Problem(prompt: prompt, answer: answer, task: task, extraJSON: extraJSON)
      problem.source = "\(path):\(n + 1)"
      rows.append(problem)
    }
    return rows
  }

  /// The training problem at a global index: a JSONL file's rows in a fresh seeded permutation
  /// per epoch (never the file's order), or the task's train split.
  public func trainProblem(_ index: Int) -> Problem {
    if let train {
      let epoch = index / train.count
      return train[keyedPermutation(index % train.count, count: train.count, key: hashKey(seed, 0x6A73_6F6E_6C, UInt64(epoch)))]
    }
    return split!.problem(.train, index: index, stream: .rl)
  }
}

/// Which JSONL fields hold the prompt, the reference answer and the row's task.
public struct JSONLFields: Sendable {
  public var prompt = "prompt", answer = "answer", task = "task"
  public init(prompt: String = "prompt", answer: String = "answer", task: String = "task") {
    self.prompt = prompt; self.answer = answer; self.task = task
  }
}

public enum TaskRegistry {
  public static let names = ["addition", "arithmetic", "sorting", "countdown", "scratchpad"]
  /// The built-in tasks' settings, bounded so every answer fits a 64-bit integer and every
  /// problem is cheap to make: digits 1…9; terms per task (arithmetic also
  /// digits + (terms − 1)·log10 9 ≤ 18, its largest product).
  public static let termRanges: [String: ClosedRange<Int>] = ["arithmetic": 2...16, "sorting": 1...64, "countdown": 2...12, "scratchpad": 2...64]

  public static func make(_ name: String, digits: Int?, terms: Int?) throws -> any TaskGenerator {
    if let digits, ["addition", "arithmetic", "scratchpad"].contains(name), !(1...9).contains(digits) {
      throw TaskError.invalid("task.digits must be in 1…9 for \(name), got \(digits)")
    }
    if let terms, let range = termRanges[name], !range.contains(terms) {
      throw TaskError.invalid("task.terms must be in \(range.lowerBound)…\(range.upperBound) for \(name), got \(terms) (0: the task's default)")
    }
    if name == "arithmetic", Double(digits ?? 2) + Double((terms ?? 3) - 1) * log10(9.0) > 18 {
      throw TaskError.invalid("arithmetic with \(digits ?? 2) digits and \(terms ?? 3) terms can exceed a 64-bit answer: lower task.digits or task.terms")
    }
    switch name {
    case "addition": return AdditionTask(digits: digits ?? 2)
    case "arithmetic": return ArithmeticTask(digits: digits ?? 2, terms: terms ?? 3)
    case "sorting": return SortingTask(count: terms ?? 4)
    case "countdown": return CountdownTask(numbers: terms ?? 3)
    case "scratchpad": return ScratchpadTask(digits: digits ?? 2, terms: terms ?? 4)
    default: throw TaskError.invalid("unknown task '\(name)'; valid: \(names.joined(separator: ", ")), or a .jsonl file")
    }
  }
}
