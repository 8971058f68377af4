// Teacher.swift — programmatic solvers that write demonstrations for the supervised cold
// start. Style and error rate are configurable, so cold starts of different quality exist:
//   careful   always right;   sloppy   wrong `errorRate` of the time (default 30%)
//   forgetful  forgets every carry `errorRate` of the time (default 75%): a systematic,
//              learnable mistake, the kind RL can correct by shifting probability mass
// A random error perturbs one digit of the final answer (or of one scratchpad step, which
// then propagates). A teacher is deterministic in (seed, problem index).
import KeelRandom

public struct Teacher: Sendable {
  public enum Style: String, Sendable, CaseIterable { case answer, steps }
  /// What a wrong demonstration gets wrong: one random digit, or every carry of the addition.
  public enum Mistake: String, Sendable { case digit, carry }
  public var errorRate: Double
  public var style: Style
  public var mistake: Mistake
  public var seed: UInt64
  public init(errorRate: Double = 0, style: Style = .steps, mistake: Mistake = .digit, seed: UInt64 = 1) {
    self.errorRate = errorRate
    self.style = style
    self.mistake = mistake
    self.seed = seed
  }

  public static func named(_ name: String) -> Teacher? {
    switch name {
    case "careful": return Teacher(errorRate: 0)
    case "sloppy": return Teacher(errorRate: 0.3)
    case "terse": return Teacher(errorRate: 0, style: .answer)
    case "forgetful": return Teacher(errorRate: 0.75, mistake: .carry)
    default: return nil
    }
  }

  /// a + b written digit by digit without carrying (every carry forgotten).
  static func sumWithoutCarries(_ a: Int, _ b: Int) -> Int {
    var result = 0, place = 1, x = a, y = b
    while x > 0 || y > 0 {
      result += ((x % 10 + y % 10) % 10) * place
      x /= 10; y /= 10; place *= 10
    }
    return result
  }

  func perturb(_ digits: String, _ rng: inout SplitMix64) -> String {
    var chars = Array(digits)
    let positions = chars.indices.filter { chars[$0].isNumber }
    guard let i = positions.isEmpty ? nil : positions[rng.int(0...(positions.count - 1))] else { return digits }
    let d = Int(String(chars[i]))!
    chars[i] = Character(String((d + rng.int(1...9)) % 10))
    return String(chars)
  }

  /// The demonstration response for a problem (without the stop token).
  public func demonstrate(_ p: Problem, index: Int) -> String {
    var rng = SplitMix64(seed: seed &* 0x2545_F491_4F6C_DD1D &+ UInt64(index))
    let wrong = rng.uniform() < errorRate
    switch p.task {
    case "scratchpad":
      if style == .answer { return "#" + (wrong ? perturb(p.answer, &rng) : p.answer) }
      var xs = p.prompt.dropLast().split(separator: "+").compactMap { Int($0) }
      let breakAt = wrong ? rng.int(1...(xs.count - 1)) : -1
      var steps: [String] = []
      var acc = xs[0]
      for (j, x) in xs.dropFirst().enumerated() {
        var sum = acc + x
        if wrong && mistake == .carry { sum = Self.sumWithoutCarries(acc, x) }
        else if j + 1 == breakAt { sum = Int(perturb(String(sum), &rng)) ?? sum }
        steps.append("\(acc)+\(x)=\(sum)")
        acc = sum
      }
      xs.removeAll()
      return steps.joined(separator: ";") + "#\(acc)"
    case "addition" where wrong && mistake == .carry:
      let xs = p.prompt.dropLast().split(separator: "+").compactMap { Int($0) }
      return String(xs.count == 2 ? Self.sumWithoutCarries(xs[0], xs[1]) : Int(p.answer)!)
    default:
      return wrong ? perturb(p.answer, &rng) : p.answer
    }
  }
}
