// SplitTests.swift — the train / validation / held-out split is unbiased:
//  - for every built-in task at its default and experiment settings, the train and held-out
//    answer distributions (parity, last digit, answer length, first operand) are homogeneous
//    by a chi-square test at the 0.1% level (a biased split fails it by orders of magnitude:
//    the old FNV-mod-8 split made every 1-digit scratchpad held-out sum odd);
//  - the 1-digit, 4-term scratchpad held-out set has 50 ± 3% odd sums (the whole pool and the
//    500-problem evaluation set);
//  - changing one digit of a prompt moves it between splits at the rate the split fractions
//    predict, for every digit substitution (the old split never moved 0↔8 or 1↔9);
//  - the split fractions are the declared ones, problem streams differ, and a JSONL dataset
//    splits by the same hash.
import Foundation
import KeelRandom
import KeelTasks
import XCTest

final class SplitTests: XCTestCase {
  /// The settings the tasks run at: defaults and every experiment's.
  static let tasks: [any TaskGenerator] = [
    AdditionTask(digits: 2), AdditionTask(digits: 3), ArithmeticTask(), SortingTask(), CountdownTask(),
    ScratchpadTask(digits: 2, terms: 4), ScratchpadTask(digits: 1, terms: 4), ScratchpadTask(digits: 1, terms: 3),
  ]

  /// Upper 0.1% point of chi-square with `df` degrees of freedom (Wilson–Hilferty: within 1% for df ≥ 2, 3% lenient at df = 1).
  static func chiSquareCritical(df: Int) -> Double {
    let z = 3.0902, d = Double(df)
    return d * pow(1 - 2 / (9 * d) + z * (2 / (9 * d)).squareRoot(), 3)
  }

  /// Pearson's chi-square test of homogeneity of two samples of a categorical feature; categories
  /// with fewer than 10 observations in all are pooled. Returns (statistic, df).
  static func chiSquare(_ a: [String], _ b: [String]) -> (stat: Double, df: Int) {
    var counts: [String: (Int, Int)] = [:]
    for x in a { counts[x, default: (0, 0)].0 += 1 }
    for x in b { counts[x, default: (0, 0)].1 += 1 }
    var cells: [(Int, Int)] = []
    var pooled = (0, 0)
    for (_, c) in counts.sorted(by: { $0.key < $1.key }) {
      if c.0 + c.1 < 10 { pooled.0 += c.0; pooled.1 += c.1 } else { cells.append(c) }
    }
    if pooled.0 + pooled.1 > 0 { cells.append(pooled) }
    guard cells.count > 1 else { return (0, 0) }
    let na = Double(a.count), nb = Double(b.count), n = na + nb
    var stat = 0.0
    for c in cells {
      let total = Double(c.0 + c.1)
      let ea = total * na / n, eb = total * nb / n
      stat += (Double(c.0) - ea) * (Double(c.0) - ea) / ea + (Double(c.1) - eb) * (Double(c.1) - eb) / eb
    }
    return (stat, cells.count - 1)
  }

  nonisolated(unsafe) static let features: [(String, @Sendable (Problem) -> String)] = [
    ("answer parity", { p in Int(p.answer).map { abs($0) % 2 == 0 ? "even" : "odd" } ?? "-" }),
    ("answer last character", { p in String(p.answer.last ?? " ") }),
    ("answer length", { p in String(p.answer.count) }),
    ("first operand", { p in String(p.prompt.drop { !$0.isNumber }.prefix { $0.isNumber }) }),
  ]

  func testTrainAndHeldOutAnswerDistributionsMatchForEveryTask() {
    for task in Self.tasks {
      let split = TaskSplit(generator: task, seed: 1)
      let train = (0..<4000).map { split.problem(.train, index: $0, stream: .rl) }
      let held = split.evalSet(count: 1000)
      XCTAssertGreaterThan(held.count, 100, task.fingerprint)
      for (name, f) in Self.features {
        let (stat, df) = Self.chiSquare(train.map(f), held.map(f))
        guard df > 0 else { continue }
        XCTAssertLessThan(stat, Self.chiSquareCritical(df: df),
                          "\(task.fingerprint): \(name) differs between train and held-out (chi-square \(stat), df \(df))")
      }
    }
  }

  /// The chi-square check is strong enough to catch the bias that voided the old experiments:
  /// the old FNV-mod-8 rule applied to the same problems fails it.
  func testTheChiSquareCheckCatchesTheOldBiasedSplit() {
    let task = ScratchpadTask(digits: 1, terms: 4)
    var rng = SplitMix64(seed: 7)
    let all = (0..<20000).map { _ in task.problem(&rng) }
    let old = { (p: Problem) in TaskSplit.fnv(p.prompt) % 8 == 0 }
    let (stat, df) = Self.chiSquare(all.filter { !old($0) }.map(Self.features[0].1), all.filter(old).map(Self.features[0].1))
    XCTAssertGreaterThan(stat, 10 * Self.chiSquareCritical(df: max(df, 1)))
  }

  func testOneDigitScratchpadHeldOutSumsAreHalfOdd() {
    // the whole pool: every 4-term prompt of 1-digit operands
    var odd = 0, held = 0
    for a in 0...9 { for b in 0...9 { for c in 0...9 { for d in 0...9 {
      let prompt = "\(a)+\(b)+\(c)+\(d)="
      if TaskSplit.split(of: prompt) == .eval { held += 1; odd += (a + b + c + d) % 2 }
    } } } }
    XCTAssertEqual(Double(held) / 10_000, 2.0 / 16, accuracy: 0.01)
    XCTAssertEqual(Double(odd) / Double(held), 0.5, accuracy: 0.03)
    // the evaluation set the experiments use
    for seed in [1, 2, 3] as [UInt64] {
      let set = TaskSplit(generator: ScratchpadTask(digits: 1, terms: 4), seed: seed).evalSet(count: 500)
      let frac = Double(set.filter { Int($0.answer)! % 2 == 1 }.count) / Double(set.count)
      XCTAssertEqual(frac, 0.5, accuracy: 0.06, "seed \(seed): \(set.count) problems")  // ±2.7σ at n = 500
    }
  }

  func testChangingOneDigitMovesAPromptAtTheExpectedRate() {
    let p = TaskSplit.fractions.map(\.1)
    let expectedMove = 1 - p.map { $0 * $0 }.reduce(0, +)
    var moves = [[Int]](repeating: [Int](repeating: 0, count: 10), count: 10), tries = 0
    var opportunities = moves
    for a in 10...99 { for b in 10...99 {
      let prompt = Array("\(a)+\(b)=")
      let from = TaskSplit.split(of: String(prompt))
      tries += 1
      for pos in [0, 1, 3, 4] {
        let d = Int(String(prompt[pos]))!
        for e in 0...9 where e != d {
          var q = prompt
          q[pos] = Character(String(e))
          opportunities[d][e] += 1
          if TaskSplit.split(of: String(q)) != from { moves[d][e] += 1 }
        }
      }
    } }
    let total = moves.flatMap { $0 }.reduce(0, +)
    let all = Double(tries * 4 * 9)
    XCTAssertEqual(Double(total) / all, expectedMove, accuracy: 0.01)
    // every substitution d → e moves prompts, at the expected rate (1,620 to 3,420 tries per pair: σ ≤ 0.012)
    for d in 0...9 { for e in 0...9 where e != d {
      let n = moves[d][e], pairs = Double(opportunities[d][e])
      XCTAssertGreaterThan(Double(n) / pairs, expectedMove - 0.08, "digit \(d) → \(e)")
      XCTAssertLessThan(Double(n) / pairs, expectedMove + 0.08, "digit \(d) → \(e)")
    } }
  }

  func testSplitFractionsStreamsAndDisjointness() {
    var counts: [Split: Int] = [:]
    var rng = SplitMix64(seed: 3)
    let task = AdditionTask(digits: 3)
    for _ in 0..<40000 { counts[TaskSplit.split(of: task.problem(&rng).prompt), default: 0] += 1 }
    for (s, f) in TaskSplit.fractions { XCTAssertEqual(Double(counts[s] ?? 0) / 40000, f, accuracy: 0.008, "\(s)") }
    let split = TaskSplit(generator: task, seed: 1)
    // the cold start's stream is not RL's: index i differs
    let rl = (0..<200).map { split.problem(.train, index: $0, stream: .rl).prompt }
    let cold = (0..<200).map { split.problem(.train, index: $0, stream: .coldStart).prompt }
    XCTAssertLessThan(zip(rl, cold).filter { $0 == $1 }.count, 3)
    // validation and held-out never overlap with training
    let val = Set(split.distinctSet(.validation, count: 200, stream: .coldStart).map(\.prompt))
    let held = Set(split.evalSet(count: 500).map(\.prompt))
    XCTAssertTrue(val.isDisjoint(with: held))
    XCTAssertTrue(val.allSatisfy { TaskSplit.split(of: $0) == .validation })
    XCTAssertTrue(Set(rl).isDisjoint(with: held.union(val)))
    // another seed draws other problems from the same splits
    let other = TaskSplit(generator: task, seed: 2)
    XCTAssertNotEqual(rl, (0..<200).map { other.problem(.train, index: $0, stream: .rl).prompt })
  }

  func testJSONLDatasetsSplitByTheSameHashAndCarryTheirMarker() throws {
    let dir = NSTemporaryDirectory() + "keel-split-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var lines: [String] = []
    for a in 0..<40 { for b in 0..<40 { lines.append("{\"prompt\": \"\(a)+\(b)+1=\", \"answer\": \"\(a + b + 1)\"}") } }
    try lines.joined(separator: "\n").write(toFile: dir + "/d.jsonl", atomically: true, encoding: .utf8)
    let d = try Dataset(jsonl: dir + "/d.jsonl", evalCount: 10_000, marker: "#")
    XCTAssertEqual(d.answerMarker, "#")
    XCTAssertTrue(d.eval.allSatisfy { TaskSplit.split(of: $0.prompt) == .eval })
    XCTAssertEqual(Double(d.eval.count) / 1600, 2.0 / 16, accuracy: 0.03)
    let parity = { (p: Problem) in Int(p.answer)! % 2 == 0 ? "even" : "odd" }
    let (stat, df) = Self.chiSquare(d.train!.map(parity), d.eval.map(parity))
    XCTAssertLessThan(stat, Self.chiSquareCritical(df: max(df, 1)))
  }

  func testJSONLFieldNamesAndASecondFileOfHeldOutRows() throws {
    let dir = NSTemporaryDirectory() + "keel-jsonl2-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let train = (0..<30).map { "{\"question\": \"\($0)+1=\", \"solution\": \($0 + 1), \"level\": 2}" }
    let held = (100..<110).map { "{\"question\": \"\($0)+1=\", \"solution\": \($0 + 1)}" }
    try train.joined(separator: "\n").write(toFile: dir + "/train.jsonl", atomically: true, encoding: .utf8)
    try held.joined(separator: "\n").write(toFile: dir + "/held.jsonl", atomically: true, encoding: .utf8)
    let fields = JSONLFields(prompt: "question", answer: "solution")
    let d = try Dataset(jsonl: dir + "/train.jsonl", evalPath: dir + "/held.jsonl", evalCount: 8, fields: fields)
    XCTAssertEqual(d.train?.count, 30, "every row of the training file trains")
    // 8 of the 10 held-out rows, chosen by split hash (not the file's first 8), in file order
    let byHash = (100..<110).map { "\($0)+1=" }.sorted { TaskSplit.splitHash($0) < TaskSplit.splitHash($1) }
    XCTAssertEqual(d.eval.map(\.prompt), (100..<110).map { "\($0)+1=" }.filter { byHash.prefix(8).contains($0) })
    XCTAssertEqual(d.eval.first { $0.prompt == "101+1=" }?.answer ?? "102", "102")
    XCTAssertEqual(d.train?[3].extraJSON, "{\"level\":2}", "other fields reach the reward plugins")
    // a held-out prompt that is also trained on is refused
    try (held + ["{\"question\": \"5+1=\", \"solution\": 6}"]).joined(separator: "\n").write(toFile: dir + "/held.jsonl", atomically: true, encoding: .utf8)
    XCTAssertThrowsError(try Dataset(jsonl: dir + "/train.jsonl", evalPath: dir + "/held.jsonl", evalCount: 100, fields: fields)) {
      XCTAssertTrue("\($0)".contains("1 held-out prompt(s) also appear in the training file") && "\($0)".contains("5+1="), "\($0)")
    }
    // a missing field is named with its configured name
    XCTAssertThrowsError(try Dataset(jsonl: dir + "/train.jsonl", evalCount: 8)) { XCTAssertTrue("\($0)".contains("field 'prompt' (a string) is missing"), "\($0)") }
  }

  /// A JSONL file sorted by its first operand (as files often are): RL's batches and the
  /// held-out set must not follow the file's order (before: the first batches were all "0+…",
  /// and the held-out set was the first eval_size held-out rows, small first operands only).
  func testAJSONLFilesOrderDoesNotShapeTheBatchesOrTheHeldOutSet() throws {
    let dir = NSTemporaryDirectory() + "keel-jsonlorder-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var lines: [String] = []
    for a in 0..<100 { for b in 0..<100 { lines.append("{\"prompt\": \"\(a)+\(b)=\", \"answer\": \"\(a + b)\"}") } }
    try lines.joined(separator: "\n").write(toFile: dir + "/sorted.jsonl", atomically: true, encoding: .utf8)
    try lines.reversed().joined(separator: "\n").write(toFile: dir + "/reversed.jsonl", atomically: true, encoding: .utf8)
    let d = try Dataset(jsonl: dir + "/sorted.jsonl", evalCount: 500, seed: 1)
    let r = try Dataset(jsonl: dir + "/reversed.jsonl", evalCount: 500, seed: 1)
    let first = { (p: Problem) in Double(p.prompt.split(separator: "+")[0])! }
    // the held-out set: the same 500 problems whatever the order, spread over every first operand
    XCTAssertEqual(d.eval.count, 500)
    XCTAssertEqual(Set(d.eval.map(\.prompt)), Set(r.eval.map(\.prompt)))
    XCTAssertEqual(d.eval.map(first).reduce(0, +) / 500, 49.5, accuracy: 4, "held-out mean first operand (uniform 0…99: 49.5 ± 1.3 s.e.)")
    XCTAssertTrue(d.eval.allSatisfy { TaskSplit.split(of: $0.prompt) == .eval })
    // the first RL batch (32 prompts): spread like the file, not its first rows
    let batch = (0..<32).map { d.trainProblem($0) }
    XCTAssertEqual(batch.map(first).reduce(0, +) / 32, 49.5, accuracy: 17, "first batch mean first operand (s.e. 5.1)")
    XCTAssertGreaterThan(Set(batch.map(first)).count, 15)
    // every training row once per epoch, a different order next epoch and under another seed
    let n = d.train!.count
    let epoch0 = (0..<n).map { d.trainProblem($0).prompt }, epoch1 = (n..<(2 * n)).map { d.trainProblem($0).prompt }
    XCTAssertEqual(Set(epoch0).count, n)
    XCTAssertEqual(Set(epoch1), Set(epoch0))
    XCTAssertNotEqual(epoch0.prefix(100), epoch1.prefix(100))
    let s2 = try Dataset(jsonl: dir + "/sorted.jsonl", evalCount: 500, seed: 2)
    XCTAssertNotEqual((0..<100).map { s2.trainProblem($0).prompt }, Array(epoch0.prefix(100)))
    XCTAssertEqual(TaskSplit.dataVersion(task: dir + "/sorted.jsonl"), "split-v2/jsonl-v2")
    XCTAssertEqual(TaskSplit.dataVersion(task: "addition"), "split-v2")
  }

  func testKeyedPermutationIsABijectionAndKeyed() {
    for n in [1, 2, 3, 5, 16, 17, 255, 1000, 4097] {
      let p = (0..<n).map { keyedPermutation($0, count: n, key: 42) }
      XCTAssertEqual(Set(p).count, n, "n = \(n)")
      XCTAssertTrue(p.allSatisfy { (0..<n).contains($0) })
      if n >= 16 {
        XCTAssertNotEqual(p, (0..<n).map { keyedPermutation($0, count: n, key: 43) }, "n = \(n)")
        XCTAssertNotEqual(p, Array(0..<n), "n = \(n)")
      }
    }
    // positions are spread: the image of the first 10% of 0..<1000 has a mean near 500
    let head = (0..<100).map { Double(keyedPermutation($0, count: 1000, key: 7)) }
    XCTAssertEqual(head.reduce(0, +) / 100, 499.5, accuracy: 87, "s.e. 29")
  }

  func testATaskTooSmallToSplitIsRefused() throws {
    XCTAssertThrowsError(try TaskSplit(generator: SortingTask(count: 1, maxValue: 1), seed: 1).checkPopulated()) { e in
      XCTAssertTrue("\(e)".contains("too few distinct prompts") && "\(e)".contains("sorting(count=1,max=1)"), "\(e)")
    }
    XCTAssertThrowsError(try Dataset(task: SortingTask(count: 1, maxValue: 1), seed: 1, evalCount: 10))
    for task in Self.tasks { XCTAssertNoThrow(try TaskSplit(generator: task, seed: 1).checkPopulated(), task.fingerprint) }
  }

  func testFingerprintsNameEverySetting() {
    XCTAssertNotEqual(ScratchpadTask(digits: 1, terms: 4).fingerprint, ScratchpadTask(digits: 1, terms: 3).fingerprint)
    XCTAssertNotEqual(ScratchpadTask(digits: 1, terms: 4).fingerprint, ScratchpadTask(digits: 2, terms: 4).fingerprint)
    XCTAssertNotEqual(AdditionTask(digits: 2).fingerprint, AdditionTask(digits: 3).fingerprint)
  }
}
