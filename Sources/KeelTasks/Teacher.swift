// Teacher.swift — programmatic solvers that write demonstrations for the supervised cold
// start. Style and error rate are configurable, so cold starts of different quality exist:
//   careful   always right;   sloppy   wrong `errorRate` of the time (default 30%)
// An error perturbs one digit of the final answer (or of one scratchpad step, which then
// propagates). A teacher is deterministic in (seed, problem index).
public struct Teacher: Sendable {
  public enum Style: String, Sendable, CaseIterable { case answer, steps }
  public var errorRate: Double
  public var style: Style
  public var seed: UInt64
  public init(errorRate: Double = 0, style: Style = .steps, seed: UInt64 = 1) {
    self.errorRate = errorRate
    self.style = style
    self.seed = seed
  }

  public static func named(_ name: String) -> Teacher? {
    switch name {
    case "careful": return Teacher(errorRate: 0)
    case "sloppy": return Teacher(errorRate: 0.3)
    case "terse": return Teacher(errorRate: 0, style: .answer)
    default: return nil
    }
  }

  func perturb(_ digits: String, _ rng: inout ProblemRNG) -> String {
    var chars = Array(digits)
    let positions = chars.indices.filter { chars[$0].isNumber }
    guard let i = positions.isEmpty ? nil : positions[rng.int(0...(positions.count - 1))] else { return digits }
    let d = Int(String(chars[i]))!
    chars[i] = Character(String((d + rng.int(1...9)) % 10))
    return String(chars)
  }

  /// The demonstration response for a problem (without the stop token).
  public func demonstrate(_ p: Problem, index: Int) -> String {
    var rng = ProblemRNG(seed: seed &* 0x2545_F491_4F6C_DD1D &+ UInt64(index))
    let wrong = Double(rng.next() >> 11) * 0x1.0p-53 < errorRate
    switch p.task {
    case "scratchpad":
      if style == .answer { return "#" + (wrong ? perturb(p.answer, &rng) : p.answer) }
      var xs = p.prompt.dropLast().split(separator: "+").compactMap { Int($0) }
      let breakAt = wrong ? rng.int(1...(xs.count - 1)) : -1
      var steps: [String] = []
      var acc = xs[0]
      for (j, x) in xs.dropFirst().enumerated() {
        var sum = acc + x
        if j + 1 == breakAt { sum = Int(perturb(String(sum), &rng)) ?? sum }
        steps.append("\(acc)+\(x)=\(sum)")
        acc = sum
      }
      xs.removeAll()
      return steps.joined(separator: ";") + "#\(acc)"
    default:
      return wrong ? perturb(p.answer, &rng) : p.answer
    }
  }
}
