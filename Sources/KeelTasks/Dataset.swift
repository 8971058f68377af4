// Dataset.swift — where problems come from: a procedural task (train/eval split) or a user's
// JSONL file, one object per line: {"prompt": …, "answer": …, "task"?: …, any other fields}.
// Both split by the same well-mixed prompt hash (TaskSplit.split(of:)): a JSONL row hashed to
// the held-out split is held out (up to evalCount), every other row trains.
// The other fields are passed to reward plugins as the row's extra JSON; `task` selects the
// reward for the row. A bad row is an error naming the file, the line and the field.
import Foundation

public struct Dataset: Sendable {
  public let name: String
  public let train: [Problem]?
  public let eval: [Problem]
  public let split: TaskSplit?
  public let answerMarker: String

  /// A procedural task: problems on demand for training, a fixed held-out set for eval.
  /// `marker`: the final-answer marker when the config sets one (nil: the task's own).
  public init(task: any TaskGenerator, seed: UInt64, evalCount: Int, marker: String? = nil) throws {
    name = task.name
    split = TaskSplit(generator: task, seed: seed)
    try split!.checkPopulated()
    train = nil
    eval = split!.evalSet(count: evalCount)
    answerMarker = marker ?? task.answerMarker
  }

  /// JSONL: rows whose prompt hashes to the held-out split are held out (up to `evalCount`).
  /// `marker`: the final-answer marker that evaluation (and the reward, unless it sets its own) uses.
  public init(jsonl path: String, evalCount: Int, marker: String = "") throws {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw TaskError.invalid("dataset \(path): cannot read the file")
    }
    var rows: [Problem] = []
    for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let trimmed = line.trimmingCharacters(in: .whitespaces)
      if trimmed.isEmpty { continue }
      guard let obj = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
        throw TaskError.invalid("dataset \(path):\(n + 1): not a JSON object")
      }
      guard let prompt = obj["prompt"] as? String else { throw TaskError.invalid("dataset \(path):\(n + 1): field 'prompt' (a string) is missing") }
      guard let answer = obj["answer"].map({ "\($0)" }) else { throw TaskError.invalid("dataset \(path):\(n + 1): field 'answer' is missing") }
      let task = obj["task"] as? String ?? "jsonl"
      var extra = obj
      for k in ["prompt", "answer", "task"] { extra.removeValue(forKey: k) }
      let extraJSON = String(decoding: try JSONSerialization.data(withJSONObject: extra, options: [.sortedKeys]), as: UTF8.self)
      rows.append(Problem(prompt: prompt, answer: answer, task: task, extraJSON: extraJSON))
    }
    guard rows.count >= 2 else { throw TaskError.invalid("dataset \(path): needs at least 2 rows, found \(rows.count)") }
    var train: [Problem] = [], eval: [Problem] = []
    for r in rows { (TaskSplit.split(of: r.prompt) == .eval && eval.count < evalCount ? { eval.append(r) } : { train.append(r) })() }
    if eval.isEmpty { eval.append(train.removeLast()) }
    name = (path as NSString).lastPathComponent
    self.train = train
    self.eval = eval
    self.split = nil
    answerMarker = marker
  }

  /// The training problem at a global index (cycling through a JSONL file).
  public func trainProblem(_ index: Int) -> Problem {
    if let train { return train[index % train.count] }
    return split!.problem(.train, index: index, stream: .rl)
  }
}

public enum TaskRegistry {
  public static let names = ["addition", "arithmetic", "sorting", "countdown", "scratchpad"]
  public static func make(_ name: String, digits: Int?, terms: Int?) throws -> any TaskGenerator {
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
