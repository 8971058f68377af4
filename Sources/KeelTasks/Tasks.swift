// Tasks.swift — procedurally generated tasks with verifiable answers. Each problem is a
// pure function of (task settings, seed, index), and the train and held-out sets are
// disjoint by construction (a problem's canonical prompt is hashed into one split).
//   addition    "a+b=" → the decimal sum (default: two 2-digit numbers, the frameworks' example)
//   arithmetic  "a op b op c=" with configurable digits and operators (+ - *), left to right
//   sorting     "sort:3,1,2=" → "1,2,3"
//   countdown   "reach 24 with 3,8,1=" → an expression of the given numbers that equals it (search)
//   scratchpad  multi-step addition written out: "17+25+38=" → "17+25=42;42+38=80#80"
//               (tens of tokens: the long-response task the paper's experiments need)
// The split (train 13/16, validation 1/16, held-out 2/16) hashes the prompt with a well-mixed
// 64-bit hash; Tests/KeelTasksTests checks that train and held-out answer distributions match.
import Foundation
import KeelRandom

public struct Problem: Sendable, Equatable {
  public var prompt: String
  public var answer: String
  public var task: String
  public var extraJSON: String = "{}"
  /// Where a row came from ("file.jsonl:12"), for messages; empty for generated problems.
  public var source: String = ""
  public init(prompt: String, answer: String, task: String, extraJSON: String = "{}") {
    self.prompt = prompt
    self.answer = answer
    self.task = task
    self.extraJSON = extraJSON
  }
}

/// train: RL and the cold start's demonstrations; validation: the cold start's early stop (what
/// chooses a checkpoint); eval: the held-out test set every reported accuracy is measured on.
public enum Split: UInt64, Sendable { case train = 0, eval = 1, validation = 2 }

public protocol TaskGenerator: Sendable {
  var name: String { get }
  /// The problem for a raw index (before the split filter).
  func problem(_ rng: inout SplitMix64) -> Problem
  /// The marker that precedes the final answer in a response ("" if the whole response is the answer).
  var answerMarker: String { get }
  /// Every setting that changes the problems, e.g. "scratchpad(digits=1,terms=4)" (cache keys).
  var fingerprint: String { get }
}

func number(digits: Int, _ rng: inout SplitMix64) -> Int {
  digits <= 1 ? rng.int(0...9) : rng.int(Int(pow(10, Double(digits - 1)))...(Int(pow(10, Double(digits))) - 1))
}

public struct AdditionTask: TaskGenerator {
  public var digits = 2
  public init(digits: Int = 2) { self.digits = digits }
  public var name: String { "addition" }
  public var fingerprint: String { "addition(digits=\(digits))" }
  public var answerMarker: String { "" }
  public func problem(_ rng: inout SplitMix64) -> Problem {
    let a = number(digits: digits, &rng), b = number(digits: digits, &rng)
    return Problem(prompt: "\(a)+\(b)=", answer: "\(a + b)", task: name)
  }
}

public struct ArithmeticTask: TaskGenerator {
  public var digits = 2, terms = 3
  public var operators: [Character] = ["+", "-", "*"]
  public init(digits: Int = 2, terms: Int = 3, operators: [Character] = ["+", "-", "*"]) {
    self.digits = digits
    self.terms = terms
    self.operators = operators
  }
  public var name: String { "arithmetic" }
  public var fingerprint: String { "arithmetic(digits=\(digits),terms=\(terms),operators=\(String(operators)))" }
  public var answerMarker: String { "" }
  public func problem(_ rng: inout SplitMix64) -> Problem {
    var value = number(digits: digits, &rng)
    var prompt = "\(value)"
    for _ in 1..<terms {
      let op = operators[rng.int(0...(operators.count - 1))]
      let x = number(digits: op == "*" ? 1 : digits, &rng)
      switch op {
      case "+": value += x
      case "-": value -= x
      default: value *= x
      }
      prompt += "\(op)\(x)"
    }
    return Problem(prompt: prompt + "=", answer: "\(value)", task: name)
  }
}

public struct SortingTask: TaskGenerator {
  public var count = 4, maxValue = 9
  public init(count: Int = 4, maxValue: Int = 9) { self.count = count; self.maxValue = maxValue }
  public var name: String { "sorting" }
  public var fingerprint: String { "sorting(count=\(count),max=\(maxValue))" }
  public var answerMarker: String { "" }
  public func problem(_ rng: inout SplitMix64) -> Problem {
    let xs = (0..<count).map { _ in rng.int(0...maxValue) }
    return Problem(prompt: "sort:" + xs.map(String.init).joined(separator: ",") + "=",
                   answer: xs.sorted().map(String.init).joined(separator: ","), task: name)
  }
}

/// Reach a target from given numbers with + - * (each number used once, left to right);
/// the reference is one solution; the reward plugin accepts any correct expression via `extra`.
public struct CountdownTask: TaskGenerator {
  public var numbers = 3
  public init(numbers: Int = 3) { self.numbers = numbers }
  public var name: String { "countdown" }
  public var fingerprint: String { "countdown(numbers=\(numbers))" }
  public var answerMarker: String { "" }
  public func problem(_ rng: inout SplitMix64) -> Problem {
    let xs = (0..<numbers).map { _ in rng.int(1...9) }
    var value = xs[0]
    var expr = "\(xs[0])"
    for x in xs.dropFirst() {
      switch rng.int(0...2) {
      case 0: value += x; expr += "+\(x)"
      case 1: value -= x; expr += "-\(x)"
      default: value *= x; expr += "*\(x)"
      }
    }
    let extra = "{\"numbers\":[\(xs.map(String.init).joined(separator: ","))],\"target\":\(value)}"
    return Problem(prompt: "reach \(value) with " + xs.map(String.init).joined(separator: ",") + "=", answer: expr, task: name, extraJSON: extra)
  }
}

/// Multi-step addition with a written scratchpad: "a+b+c+…=" → "a+b=s1;s1+c=s2;…#sN".
public struct ScratchpadTask: TaskGenerator {
  public var digits = 2, terms = 4
  public init(digits: Int = 2, terms: Int = 4) { self.digits = digits; self.terms = terms }
  public var name: String { "scratchpad" }
  public var fingerprint: String { "scratchpad(digits=\(digits),terms=\(terms))" }
  public var answerMarker: String { "#" }
  public func problem(_ rng: inout SplitMix64) -> Problem {
    let xs = (0..<terms).map { _ in number(digits: digits, &rng) }
    return Problem(prompt: xs.map(String.init).joined(separator: "+") + "=", answer: "\(xs.reduce(0, +))", task: name)
  }
  /// The worked solution a careful teacher writes.
  public static func solution(prompt: String) -> String {
    let xs = prompt.dropLast().split(separator: "+").compactMap { Int($0) }
    var steps: [String] = []
    var acc = xs[0]
    for x in xs.dropFirst() { steps.append("\(acc)+\(x)=\(acc + x)"); acc += x }
    return steps.joined(separator: ";") + "#\(acc)"
  }
}

/// Train / validation / held-out problems of one task, disjoint: a problem belongs to the split
/// its prompt hashes to (`TaskSplit.split(of:)`), whatever the seed. Problems are drawn from
/// separate keyed streams (`ProblemStream`), so the cold start's demonstrations, RL's batches
/// and the evaluation sets never line up index for index.
public struct TaskSplit: Sendable {
  public let generator: any TaskGenerator
  public let seed: UInt64
  public init(generator: any TaskGenerator, seed: UInt64) { self.generator = generator; self.seed = seed }

  /// 64-bit FNV-1a of the prompt's bytes. Its low bits are NOT well mixed (the prime is ≡ 3 mod 8,
  /// so `fnv % 8` depends only on each byte's low three bits): use `splitHash`.
  public static func fnv(_ s: String) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    return h
  }
  /// The split hash: SplitMix64's finaliser over FNV-1a, so every output bit depends on every
  /// input bit (a one-character change re-draws the split).
  public static func splitHash(_ prompt: String) -> UInt64 { splitMix64Finalize(fnv(prompt) ^ 0x6B65_656C_7370_6C74) }

  /// The split scheme and problem streams, recorded in a run's provenance.json: runs made under
  /// another version drew other problems (keel compare does not reuse them).
  public static let dataVersion = "split-v2"
  /// The data version of a run on `task` (a task name or a .jsonl path): JSONL runs add how a
  /// file's rows are ordered and held out (jsonl-v2: a seeded permutation per epoch and a
  /// held-out sample by split hash; before, the file's order).
  public static func dataVersion(task: String) -> String { task.hasSuffix(".jsonl") ? dataVersion + "/jsonl-v2" : dataVersion }

  /// Held-out test: 2 in 16 prompts; validation (the cold start's early stop): 1 in 16; train: 13 in 16.
  public static let fractions: [(Split, Double)] = [(.train, 13.0 / 16), (.eval, 2.0 / 16), (.validation, 1.0 / 16)]

  public static func split(of prompt: String) -> Split {
    switch splitHash(prompt) >> 60 {
    case 0, 1: return .eval
    case 2: return .validation
    default: return .train
    }
  }

  /// The i-th problem of a split in a stream (deterministic in seed, split, stream and i).
  /// The split must hold prompts (`checkPopulated()`).
  public func problem(_ split: Split, index: Int, stream: ProblemStream = .rl) -> Problem {
    var rng = SplitMix64(seed: hashKey(seed, split.rawValue, stream.rawValue, UInt64(bitPattern: Int64(index))))
    for _ in 0..<10_000_000 {
      let p = generator.problem(&rng)
      if Self.split(of: p.prompt) == split { return p }
    }
    preconditionFailure("\(generator.fingerprint): no \(split) prompt in 10^7 draws (checkPopulated() was not called)")
  }

  /// Throws when the task has so few distinct prompts that a split is empty (e.g. sorting a
  /// single 0 or 1): drawing from it would never end.
  public func checkPopulated() throws {
    var rng = SplitMix64(seed: 0x6368_6563_6B)
    var counts: [Split: Set<String>] = [:]
    for _ in 0..<8192 {
      let p = generator.problem(&rng).prompt
      counts[Self.split(of: p), default: []].insert(p)
    }
    let empty = Self.fractions.map(\.0).filter { (counts[$0]?.count ?? 0) == 0 }
    if !empty.isEmpty {
      let distinct = counts.values.map(\.count).reduce(0, +)
      throw TaskError.invalid("task \(generator.fingerprint) has too few distinct prompts (\(distinct) seen) to fill every split: no \(empty.map { "\($0)" }.joined(separator: ", ")) prompt; use more digits, terms or numbers")
    }
  }

  /// Up to `count` distinct problems of a split (fewer when the split holds fewer prompts):
  /// the fixed held-out set, or the cold start's validation set.
  public func distinctSet(_ split: Split, count: Int, stream: ProblemStream) -> [Problem] {
    var seen = Set<String>()
    var out: [Problem] = []
    var i = 0, sinceNew = 0
    // a split smaller than `count` is exhausted once 20,000 draws in a row find nothing new
    while out.count < count && i < count * 50 && sinceNew < 20_000 {
      let p = problem(split, index: i, stream: stream)
      if seen.insert(p.prompt).inserted { out.append(p); sinceNew = 0 } else { sinceNew += 1 }
      i += 1
    }
    return out
  }

  /// `count` distinct held-out problems (a fixed set for evaluation).
  public func evalSet(count: Int) -> [Problem] { distinctSet(.eval, count: count, stream: .evaluation) }
}

/// Which consumer draws the problems: each has its own keyed stream.
public enum ProblemStream: UInt64, Sendable { case rl = 0, coldStart = 1, evaluation = 2 }
