// KernelTests.swift — tests for KeelKernels, tinygrad `helper_test_op` style: one helper
// compares a kernel's gradient with central finite differences of its own float forward,
// one compares a forward with a naive Double reference, and many short tests call them.
// The exact-mode tests compare bits: gemm rows whatever the row split, attention decode
// against a KV cache versus the full sequence, and a whole layer scored both ways.
//   swift test -c release --filter KeelKernelsTests
// Tolerances are stated at each call: forwards a few float roundings (rtol ~1e-5);
// gradients h = 1e-2, rtol 1e-2 with an absolute floor at the float noise of the loss.

import Dispatch
import Foundation
import KeelKernels
import XCTest

// MARK: - Test support

/// SplitMix64: deterministic numbers with no global state (each test owns one).
struct TestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform(_ lo: Float, _ hi: Float) -> Float {
        lo + (hi - lo) * Float(next() >> 40) / Float(1 << 24)
    }
    mutating func vector(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        (0..<n).map { _ in uniform(lo, hi) }
    }
    mutating func index(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

func assertBitsEqual(_ a: [Float], _ b: [Float], _ name: String,
                     file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(name): lengths differ", file: file, line: line)
    for i in 0..<min(a.count, b.count) where a[i].bitPattern != b[i].bitPattern {
        XCTFail("\(name): bits differ at \(i) (\(a[i]) vs \(b[i]))", file: file, line: line)
        return
    }
}

/// |got − want| ≤ atol + rtol·|want| everywhere; reports the worst element.
func assertClose(_ got: [Float], _ want: [Double], atol: Double, rtol: Double, _ name: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.count, want.count, "\(name): lengths differ", file: file, line: line)
    var ok = true, worst = 0.0, worstIndex = -1
    for i in 0..<min(got.count, want.count) {
        let err = abs(Double(got[i]) - want[i])
        if !(err <= atol + rtol * abs(want[i])) { ok = false }
        if worstIndex < 0 || !(err <= worst) { worst = err; worstIndex = i }
    }
    if !ok {
        XCTFail("\(name): max |err| \(worst) at \(worstIndex) (got \(got[worstIndex]), want \(want[worstIndex])), atol \(atol) rtol \(rtol)",
                file: file, line: line)
    }
}

/// The gradient helper: compares `analytic` with (L(x+h) − L(x−h)) / (2h), where `loss` runs
/// the float forward kernel on the perturbed input and returns Σ w·out in Double.
/// `indices` restricts the check to some elements (default: all).
func checkGradient(_ name: String, at input: [Float], analytic: [Float], h: Float = 1e-2,
                   atol: Double, rtol: Double = 1e-2, indices: [Int]? = nil,
                   file: StaticString = #filePath, line: UInt = #line,
                   loss: ([Float]) -> Double) {
    XCTAssertEqual(input.count, analytic.count, "\(name): gradient length", file: file, line: line)
    var x = input
    var worstRatio = -1.0, worstIndex = -1, worstFD = 0.0 // the element closest to (or past) its tolerance
    for i in indices ?? Array(x.indices) {
        let saved = x[i]
        let xp = saved + h, xm = saved - h
        x[i] = xp
        let lp = loss(x)
        x[i] = xm
        let lm = loss(x)
        x[i] = saved
        let fd = (lp - lm) / (Double(xp) - Double(xm))
        let ratio = abs(fd - Double(analytic[i])) / (atol + rtol * abs(fd))
        if !(ratio <= worstRatio) { worstRatio = ratio; worstIndex = i; worstFD = fd }
    }
    if worstIndex >= 0 && !(worstRatio <= 1) {
        XCTFail("\(name) gradient at \(worstIndex): analytic \(analytic[worstIndex]), finite difference \(worstFD) (err/tol \(worstRatio), atol \(atol), rtol \(rtol))",
                file: file, line: line)
    }
}

/// Σ w·y in Double: the scalar loss every gradient check differentiates.
func weightedSum(_ w: [Float], _ y: [Float]) -> Double {
    var s = 0.0
    for i in 0..<min(w.count, y.count) { s += Double(w[i]) * Double(y[i]) }
    return s
}

// MARK: - GEMM

/// Bit-exact reference: each C element is one fma chain over p in order.
func gemmChainReference(_ C: inout [Float], _ A: [Float], _ B: [Float], M: Int, N: Int, P: Int,
                        ars: Int, acs: Int, ldb: Int, ldc: Int, accumulate: Bool) {
    for i in 0..<M {
        for j in 0..<N {
            var c: Float = accumulate ? C[i * ldc + j] : 0
            for p in 0..<P { c = c.addingProduct(A[i * ars + p * acs], B[p * ldb + j]) }
            C[i * ldc + j] = c
        }
    }
}

/// kk_gemm == the fma-chain reference bit for bit (padding untouched), and ≈ the Double product.
func checkGemm(M: Int, N: Int, P: Int, transposedA: Bool, accumulate: Bool, pad: Int = 0,
               file: StaticString = #filePath, line: UInt = #line) {
    var rng = TestRNG(seed: UInt64(M * 1_000_003 + N * 1009 + P))
    let ldb = N + pad, ldc = N + pad
    let ars = transposedA ? 1 : P + pad, acs = transposedA ? M + pad : 1
    let A = rng.vector(transposedA ? P * (M + pad) : M * (P + pad))
    let B = rng.vector(P * ldb)
    var C = rng.vector(M * ldc)
    var reference = C
    kk_gemm(&C, A, B, Int64(M), Int64(N), Int64(P), Int64(ars), Int64(acs), Int64(ldb), Int64(ldc),
            accumulate ? 1 : 0)
    gemmChainReference(&reference, A, B, M: M, N: N, P: P, ars: ars, acs: acs, ldb: ldb, ldc: ldc,
                       accumulate: accumulate)
    let name = "gemm M\(M) N\(N) P\(P) transposedA \(transposedA) accumulate \(accumulate)"
    assertBitsEqual(C, reference, name + " == fma chain", file: file, line: line)
    if !accumulate {
        var got = [Float](), want = [Double]()
        for i in 0..<M {
            for j in 0..<N {
                var s = 0.0
                for p in 0..<P { s += Double(A[i * ars + p * acs]) * Double(B[p * ldb + j]) }
                got.append(C[i * ldc + j])
                want.append(s)
            }
        }
        assertClose(got, want, atol: 1e-5 + 1.2e-7 * Double(P), rtol: 0, name + " vs Double", file: file, line: line)
    }
}

/// Runs kk_gemm on rows [r0, r0 + rows) of a row-major A (M×P) into C (M×N).
func gemmRows(_ C: inout [Float], _ A: [Float], _ B: [Float], r0: Int, rows: Int, N: Int, P: Int) {
    A.withUnsafeBufferPointer { a in
        C.withUnsafeMutableBufferPointer { c in
            kk_gemm(c.baseAddress! + r0 * N, a.baseAddress! + r0 * P, B, Int64(rows), Int64(N), Int64(P),
                    Int64(P), 1, Int64(N), Int64(N), 0)
        }
    }
}

final class GemmTests: XCTestCase {
    // direct path (small products)
    func testGemm1x1x1() { checkGemm(M: 1, N: 1, P: 1, transposedA: false, accumulate: false) }
    func testGemmRowVector() { checkGemm(M: 1, N: 17, P: 3, transposedA: false, accumulate: true) }
    func testGemmEdges() { checkGemm(M: 5, N: 33, P: 7, transposedA: false, accumulate: false, pad: 3) }
    func testGemmOneTile() { checkGemm(M: 6, N: 16, P: 16, transposedA: true, accumulate: false) }
    func testGemmOdd() { checkGemm(M: 7, N: 100, P: 77, transposedA: false, accumulate: true, pad: 3) }
    func testGemmDecodeShape() { checkGemm(M: 16, N: 512, P: 128, transposedA: false, accumulate: false) }
    func testGemmEmptyP() { checkGemm(M: 13, N: 5, P: 0, transposedA: false, accumulate: false) }
    func testGemmEmptyPAccumulate() { checkGemm(M: 13, N: 5, P: 0, transposedA: false, accumulate: true) }
    // packed path: B > 512 KB, or big A with N > 64; several p, column and row blocks
    func testGemmPackedBigB() { checkGemm(M: 40, N: 300, P: 600, transposedA: false, accumulate: false) }
    func testGemmPackedBigBAccumulate() { checkGemm(M: 40, N: 300, P: 600, transposedA: false, accumulate: true) }
    func testGemmPackedTransposedA() { checkGemm(M: 40, N: 300, P: 600, transposedA: true, accumulate: true) }
    func testGemmPackedManyBlocks() { checkGemm(M: 20, N: 530, P: 260, transposedA: false, accumulate: false, pad: 3) }
    func testGemmPackedBigA() { checkGemm(M: 200, N: 96, P: 700, transposedA: false, accumulate: false) }
    /// row-major A packed 4 p at a time: a p block whose length is not a multiple of 4 (603 =
    /// 256 + 256 + 91), strided rows (pad), and a partial last row panel (45 = 7·6 + 3)
    func testGemmPackedRowMajorPTail() { checkGemm(M: 45, N: 300, P: 603, transposedA: false, accumulate: true, pad: 5) }
    func testGemmPackedBigATransposed() { checkGemm(M: 200, N: 96, P: 700, transposedA: true, accumulate: false) }

    /// Exact mode: row i of C has the same bits for any number of rows per call and any split.
    func testGemmRowsAreIndependentOfTheSplit() {
        var rng = TestRNG(seed: 7)
        let M = 300, N = 200, P = 700 // B = 560 KB: ≥ 16 rows pack, fewer read in place
        let A = rng.vector(M * P), B = rng.vector(P * N)
        var full = [Float](repeating: 0, count: M * N)
        gemmRows(&full, A, B, r0: 0, rows: M, N: N, P: P)
        for block in [1, 7, 64] {
            var parts = [Float](repeating: 0, count: M * N)
            for r0 in stride(from: 0, to: M, by: block) {
                gemmRows(&parts, A, B, r0: r0, rows: min(block, M - r0), N: N, P: P)
            }
            assertBitsEqual(parts, full, "rows in blocks of \(block)")
        }
        for split in [1, 17, 150, 299] {
            var parts = [Float](repeating: 0, count: M * N)
            gemmRows(&parts, A, B, r0: 0, rows: split, N: N, P: P)
            gemmRows(&parts, A, B, r0: split, rows: M - split, N: N, P: P)
            assertBitsEqual(parts, full, "split at row \(split)")
        }
    }

    /// A column subset (other N tiling) gives the same bits as in the full product.
    func testGemmColumnsAreIndependentOfN() {
        var rng = TestRNG(seed: 8)
        let M = 50, N = 200, P = 700, j0 = 51, width = 37
        let A = rng.vector(M * P), B = rng.vector(P * N)
        var full = [Float](repeating: 0, count: M * N)
        kk_gemm(&full, A, B, Int64(M), Int64(N), Int64(P), Int64(P), 1, Int64(N), Int64(N), 0)
        var sub = [Float](repeating: 0, count: M * width)
        B.withUnsafeBufferPointer { b in
            kk_gemm(&sub, A, b.baseAddress! + j0, Int64(M), Int64(width), Int64(P), Int64(P), 1, Int64(N), Int64(width), 0)
        }
        var expected = [Float]()
        for i in 0..<M { expected += full[(i * N + j0)..<(i * N + j0 + width)] }
        assertBitsEqual(sub, expected, "columns \(j0)..<\(j0 + width)")
    }

    /// Splitting P and accumulating through C continues the same chain.
    func testGemmAccumulateContinuesTheChain() {
        var rng = TestRNG(seed: 9)
        let M = 33, N = 40, P = 500, p0 = 123
        let A = rng.vector(M * P), B = rng.vector(P * N)
        var once = [Float](repeating: 0, count: M * N), twice = once
        kk_gemm(&once, A, B, Int64(M), Int64(N), Int64(P), Int64(P), 1, Int64(N), Int64(N), 0)
        kk_gemm(&twice, A, B, Int64(M), Int64(N), Int64(p0), Int64(P), 1, Int64(N), Int64(N), 0)
        A.withUnsafeBufferPointer { a in
            B.withUnsafeBufferPointer { b in
                kk_gemm(&twice, a.baseAddress! + p0, b.baseAddress! + p0 * N, Int64(M), Int64(N), Int64(P - p0),
                        Int64(P), 1, Int64(N), Int64(N), 1)
            }
        }
        assertBitsEqual(twice, once, "P split via accumulate")
    }

    /// Two threads on disjoint row ranges (each with its own packing buffer) == one call.
    func testGemmOnTwoThreads() {
        var rng = TestRNG(seed: 10)
        let M = 200, N = 300, P = 600, split = 93
        let A = rng.vector(M * P), B = rng.vector(P * N)
        var once = [Float](repeating: 0, count: M * N), threaded = once
        kk_gemm(&once, A, B, Int64(M), Int64(N), Int64(P), Int64(P), 1, Int64(N), Int64(N), 0)
        A.withUnsafeBufferPointer { a in
            B.withUnsafeBufferPointer { b in
                threaded.withUnsafeMutableBufferPointer { c in
                    // addresses cross into the @Sendable closure as integers; the row ranges are disjoint
                    let (aAddress, bAddress, cAddress) = (UInt(bitPattern: a.baseAddress!), UInt(bitPattern: b.baseAddress!),
                                                          UInt(bitPattern: c.baseAddress!))
                    DispatchQueue.concurrentPerform(iterations: 2) { part in
                        let ap = UnsafePointer<Float>(bitPattern: aAddress)!, bp = UnsafePointer<Float>(bitPattern: bAddress)!
                        let cp = UnsafeMutablePointer<Float>(bitPattern: cAddress)!
                        let r0 = part == 0 ? 0 : split, rows = part == 0 ? split : M - split
                        kk_gemm(cp + r0 * N, ap + r0 * P, bp, Int64(rows), Int64(N), Int64(P), Int64(P), 1,
                                Int64(N), Int64(N), 0)
                    }
                }
            }
        }
        assertBitsEqual(threaded, once, "two threads")
    }

    /// whole 8×8 tiles and every kind of edge (rows, columns, both), bit patterns compared
    func testTranspose() {
        var rng = TestRNG(seed: 11)
        for (R, C) in [(45, 70), (64, 128), (128, 64), (7, 9), (1, 33), (40, 8), (33, 1)] {
            let x = rng.vector(R * C)
            var y = [Float](repeating: .nan, count: R * C)
            kk_transpose(&y, x, Int64(R), Int64(C))
            for r in 0..<R {
                for c in 0..<C where y[c * R + r].bitPattern != x[r * C + c].bitPattern {
                    XCTFail("transpose \(R)×\(C) at \(r),\(c)"); return
                }
            }
        }
    }
}

// MARK: - RMSNorm

func checkRMSNorm(R: Int, C: Int, file: StaticString = #filePath, line: UInt = #line) {
    var rng = TestRNG(seed: UInt64(R * 131 + C))
    let eps: Float = 1e-6
    let x = rng.vector(R * C, -2, 2), w = rng.vector(C, 0.5, 1.5), dout = rng.vector(R * C)
    var out = [Float](repeating: 0, count: R * C), rstd = [Float](repeating: 0, count: R)
    kk_rmsnorm_forward(&out, &rstd, x, w, Int64(R), Int64(C), eps)
    var want = [Double](), wantRstd = [Double]()
    for r in 0..<R {
        var ss = 0.0
        for c in 0..<C { ss += Double(x[r * C + c]) * Double(x[r * C + c]) }
        let rs = 1 / (ss / Double(C) + Double(eps)).squareRoot()
        wantRstd.append(rs)
        for c in 0..<C { want.append(Double(w[c]) * Double(x[r * C + c]) * rs) }
    }
    assertClose(out, want, atol: 1e-6, rtol: 1e-5, "rmsnorm forward R\(R) C\(C)", file: file, line: line)
    assertClose(rstd, wantRstd, atol: 0, rtol: 1e-5, "rmsnorm rstd", file: file, line: line)
    // one row alone gives the bits it has in the batch
    var lastRow = [Float](repeating: 0, count: C)
    kk_rmsnorm_forward(&lastRow, nil, Array(x[((R - 1) * C)...]), w, 1, Int64(C), eps)
    assertBitsEqual(lastRow, Array(out[((R - 1) * C)...]), "rmsnorm row alone", file: file, line: line)
    // backward accumulates: start from 0.25 and subtract it again
    var dx = [Float](repeating: 0.25, count: R * C), dw = [Float](repeating: 0.25, count: C)
    kk_rmsnorm_backward(&dx, &dw, dout, x, w, rstd, Int64(R), Int64(C))
    dx = dx.map { $0 - 0.25 }
    dw = dw.map { $0 - 0.25 }
    func loss(_ x: [Float], _ w: [Float]) -> Double {
        var y = [Float](repeating: 0, count: R * C)
        kk_rmsnorm_forward(&y, nil, x, w, Int64(R), Int64(C), eps)
        return weightedSum(dout, y)
    }
    // perturbing one input moves the C outputs of its row: float noise ~1.2e-7·√C / 2h
    checkGradient("rmsnorm din R\(R) C\(C)", at: x, analytic: dx, atol: 1e-4 + 2e-5 * Double(C).squareRoot(),
                  file: file, line: line) { loss($0, w) }
    checkGradient("rmsnorm dweight R\(R) C\(C)", at: w, analytic: dw, atol: 1e-4 + 2e-5 * Double(R * C).squareRoot(),
                  file: file, line: line) { loss(x, $0) }
}

final class RMSNormTests: XCTestCase {
    func testRMSNorm1x1() { checkRMSNorm(R: 1, C: 1) }
    func testRMSNorm3x7() { checkRMSNorm(R: 3, C: 7) }
    func testRMSNorm4x8() { checkRMSNorm(R: 4, C: 8) }
    func testRMSNorm5x37() { checkRMSNorm(R: 5, C: 37) }
    func testRMSNormHeadDim64() { checkRMSNorm(R: 6, C: 64) }
    func testRMSNormHidden128() { checkRMSNorm(R: 3, C: 128) }
    func testRMSNormHidden300() { checkRMSNorm(R: 2, C: 300) }
}

// MARK: - RoPE

func checkRoPE(R: Int, heads: Int, D: Int, theta: Double, file: StaticString = #filePath, line: UInt = #line) {
    var rng = TestRNG(seed: UInt64(R * 7 + heads * 11 + D))
    let n = R * heads * D
    let positions: [Int32] = (0..<R).map { r in r % 3 == 0 ? Int32(r) : Int32(rng.index(5000)) }
    let x0 = rng.vector(n), dout = rng.vector(n)
    var x = x0
    kk_rope_forward(&x, positions, Int64(R), Int32(heads), Int32(D), theta)
    var want = [Double](repeating: 0, count: n)
    for r in 0..<R {
        for h in 0..<heads {
            let base = (r * heads + h) * D
            for i in 0..<(D / 2) {
                let angle = Double(positions[r]) * pow(theta, -2.0 * Double(i) / Double(D))
                let a = Double(x0[base + i]), b = Double(x0[base + i + D / 2])
                want[base + i] = a * cos(angle) - b * sin(angle)
                want[base + i + D / 2] = b * cos(angle) + a * sin(angle)
            }
        }
    }
    assertClose(x, want, atol: 2e-6, rtol: 0, "rope forward R\(R) H\(heads) D\(D)", file: file, line: line)
    // the table variants give the same bits
    let maxPos = 5001
    var cosTable = [Float](repeating: 0, count: maxPos * D / 2), sinTable = cosTable
    kk_rope_table(&cosTable, &sinTable, Int64(maxPos), Int32(D), theta)
    var xt = x0
    kk_rope_forward_table(&xt, positions, cosTable, sinTable, Int64(R), Int32(heads), Int32(D))
    assertBitsEqual(xt, x, "rope table forward == direct", file: file, line: line)
    // backward is the inverse rotation
    var back = x, backTable = x
    kk_rope_backward(&back, positions, Int64(R), Int32(heads), Int32(D), theta)
    kk_rope_backward_table(&backTable, positions, cosTable, sinTable, Int64(R), Int32(heads), Int32(D))
    assertBitsEqual(backTable, back, "rope table backward == direct", file: file, line: line)
    assertClose(back, x0.map(Double.init), atol: 1e-6, rtol: 0, "rope backward(forward(x)) == x", file: file, line: line)
    var grad = dout
    kk_rope_backward(&grad, positions, Int64(R), Int32(heads), Int32(D), theta)
    checkGradient("rope R\(R) H\(heads) D\(D)", at: x0, analytic: grad, atol: 1e-4, rtol: 1e-3, file: file, line: line) { input in
        var y = input
        kk_rope_forward(&y, positions, Int64(R), Int32(heads), Int32(D), theta)
        return weightedSum(dout, y)
    }
}

final class RoPETests: XCTestCase {
    func testRoPESmall() { checkRoPE(R: 5, heads: 2, D: 8, theta: 10_000) }
    func testRoPEHeadDim64() { checkRoPE(R: 7, heads: 3, D: 64, theta: 1e6) }
    func testRoPEOddHalf() { checkRoPE(R: 4, heads: 2, D: 22, theta: 1e6) }
    func testRoPEOnePair() { checkRoPE(R: 3, heads: 1, D: 2, theta: 10_000) }
    func testRoPEPositionZeroIsIdentity() {
        var rng = TestRNG(seed: 12)
        let x = rng.vector(16)
        var y = x
        kk_rope_forward(&y, [0], 1, 1, 16, 1e6)
        assertBitsEqual(y, x, "rope at position 0")
    }
}

// MARK: - Attention

struct AttentionCase {
    var T: Int, H: Int, KV: Int, D: Int
    var scale: Float { 1 / Float(D).squareRoot() }
}

/// Naive causal GQA in Double: (out, lse).
func attentionReference(_ c: AttentionCase, q: [Float], k: [Float], v: [Float]) -> ([Double], [Double]) {
    var out = [Double](repeating: 0, count: c.T * c.H * c.D), lse = [Double](repeating: 0, count: c.T * c.H)
    for t in 0..<c.T {
        for h in 0..<c.H {
            let g = h / (c.H / c.KV)
            var s = [Double](repeating: 0, count: t + 1)
            for j in 0...t {
                var d = 0.0
                for e in 0..<c.D { d += Double(q[(t * c.H + h) * c.D + e]) * Double(k[(j * c.KV + g) * c.D + e]) }
                s[j] = Double(c.scale) * d
            }
            let m = s.max()!
            let z = s.reduce(0.0) { $0 + exp($1 - m) }
            for e in 0..<c.D {
                var o = 0.0
                for j in 0...t { o += exp(s[j] - m) / z * Double(v[(j * c.KV + g) * c.D + e]) }
                out[(t * c.H + h) * c.D + e] = o
            }
            lse[t * c.H + h] = m + log(z)
        }
    }
    return (out, lse)
}

func attentionForward(_ c: AttentionCase, q: [Float], k: [Float], v: [Float]) -> (out: [Float], lse: [Float]) {
    var out = [Float](repeating: 0, count: c.T * c.H * c.D), lse = [Float](repeating: 0, count: c.T * c.H)
    kk_attention_forward(&out, &lse, q, k, v, Int64(c.T), Int32(c.H), Int32(c.KV), Int32(c.D), c.scale)
    return (out, lse)
}

func checkAttention(_ c: AttentionCase, gradients: Bool, file: StaticString = #filePath, line: UInt = #line) {
    var rng = TestRNG(seed: UInt64(c.T * 1000 + c.H * 100 + c.KV * 10 + c.D))
    let nq = c.T * c.H * c.D, nk = c.T * c.KV * c.D
    let q = rng.vector(nq, -2, 2), k = rng.vector(nk, -2, 2), v = rng.vector(nk)
    let (out, lse) = attentionForward(c, q: q, k: k, v: v)
    let (wantOut, wantLse) = attentionReference(c, q: q, k: k, v: v)
    let name = "attention T\(c.T) H\(c.H) KV\(c.KV) D\(c.D)"
    assertClose(out, wantOut, atol: 2e-6, rtol: 1e-5, name, file: file, line: line)
    assertClose(lse, wantLse, atol: 2e-6, rtol: 1e-6, name + " lse", file: file, line: line)

    // exact mode: decode against a KV cache of another layout (padded stride) == full forward
    let stride = c.KV * c.D + 5
    var kCache = [Float](repeating: 0, count: (c.T + 3) * stride), vCache = kCache
    var row = [Float](repeating: 0, count: c.H * c.D), rowLse = [Float](repeating: 0, count: c.H)
    for t in 0..<c.T {
        for e in 0..<(c.KV * c.D) {
            kCache[t * stride + e] = k[t * c.KV * c.D + e]
            vCache[t * stride + e] = v[t * c.KV * c.D + e]
        }
        let qRow = Array(q[(t * c.H * c.D)..<((t + 1) * c.H * c.D)])
        kk_attention_row_forward(&row, &rowLse, qRow, kCache, vCache, Int64(stride), Int64(t + 1),
                                 Int32(c.H), Int32(c.KV), Int32(c.D), c.scale)
        assertBitsEqual(row, Array(out[(t * c.H * c.D)..<((t + 1) * c.H * c.D)]), name + " decode row \(t)", file: file, line: line)
        assertBitsEqual(rowLse, Array(lse[(t * c.H)..<((t + 1) * c.H)]), name + " decode lse \(t)", file: file, line: line)
    }

    guard gradients else { return }
    let dout = rng.vector(nq)
    var dq = [Float](repeating: 0.5, count: nq), dk = [Float](repeating: 0.5, count: nk), dv = dk
    kk_attention_backward(&dq, &dk, &dv, dout, q, k, v, lse, Int64(c.T), Int32(c.H), Int32(c.KV), Int32(c.D), c.scale)
    dq = dq.map { $0 - 0.5 }
    dk = dk.map { $0 - 0.5 }
    dv = dv.map { $0 - 0.5 }
    checkGradient(name + " dq", at: q, analytic: dq, atol: 5e-4, file: file, line: line) {
        weightedSum(dout, attentionForward(c, q: $0, k: k, v: v).out)
    }
    checkGradient(name + " dk", at: k, analytic: dk, atol: 5e-4, file: file, line: line) {
        weightedSum(dout, attentionForward(c, q: q, k: $0, v: v).out)
    }
    checkGradient(name + " dv", at: v, analytic: dv, atol: 5e-4, file: file, line: line) {
        weightedSum(dout, attentionForward(c, q: q, k: k, v: $0).out)
    }
}

final class AttentionTests: XCTestCase {
    func testAttentionOneToken() { checkAttention(AttentionCase(T: 1, H: 1, KV: 1, D: 8), gradients: true) }
    func testAttentionMultiQuery() { checkAttention(AttentionCase(T: 5, H: 2, KV: 1, D: 8), gradients: true) }
    func testAttentionGroupedOddHeadDim() { checkAttention(AttentionCase(T: 7, H: 4, KV: 2, D: 12), gradients: true) }
    func testAttentionGroupsOfThree() { checkAttention(AttentionCase(T: 9, H: 6, KV: 3, D: 16), gradients: true) }
    func testAttentionHeadDim64() { checkAttention(AttentionCase(T: 40, H: 4, KV: 2, D: 64), gradients: false) }

    /// Past 2048 keys the scores are recomputed instead of cached: same values, checked
    /// against the reference at the last rows and by finite differences at chosen indices.
    func testAttentionLongSequenceRecomputePath() {
        let c = AttentionCase(T: 2100, H: 2, KV: 1, D: 8)
        var rng = TestRNG(seed: 2100)
        let nq = c.T * c.H * c.D, nk = c.T * c.KV * c.D
        let q = rng.vector(nq, -2, 2), k = rng.vector(nk, -2, 2), v = rng.vector(nk)
        let (out, lse) = attentionForward(c, q: q, k: k, v: v)
        // reference for the last query row only
        let t = c.T - 1
        for h in 0..<c.H {
            var s = [Double](repeating: 0, count: c.T)
            for j in 0...t {
                var d = 0.0
                for e in 0..<c.D { d += Double(q[(t * c.H + h) * c.D + e]) * Double(k[j * c.D + e]) }
                s[j] = Double(c.scale) * d
            }
            let m = s.max()!, z = s.reduce(0.0) { $0 + exp($1 - m) }
            var want = [Double](repeating: 0, count: c.D)
            for e in 0..<c.D { for j in 0...t { want[e] += exp(s[j] - m) / z * Double(v[j * c.D + e]) } }
            assertClose(Array(out[((t * c.H + h) * c.D)..<((t * c.H + h + 1) * c.D)]), want, atol: 2e-6, rtol: 1e-5, "T2100 last row head \(h)")
            assertClose([lse[t * c.H + h]], [m + log(z)], atol: 2e-6, rtol: 1e-6, "T2100 lse head \(h)")
        }
        // gradients: the loss weights only rows t ≥ 2040 so finite differences stay precise
        var dout = [Float](repeating: 0, count: nq)
        for i in (2040 * c.H * c.D)..<nq { dout[i] = rng.uniform(-1, 1) }
        var dq = [Float](repeating: 0, count: nq), dk = [Float](repeating: 0, count: nk), dv = dk
        kk_attention_backward(&dq, &dk, &dv, dout, q, k, v, lse, Int64(c.T), Int32(c.H), Int32(c.KV), Int32(c.D), c.scale)
        let queryIndices = [2040 * 16 + 3, 2047 * 16 + 9, 2048 * 16, 2060 * 16 + 5, 2099 * 16 + 15]
        let keyIndices = [3, 1000 * 8 + 1, 2047 * 8 + 7, 2049 * 8 + 2, 2099 * 8 + 4]
        checkGradient("T2100 dq", at: q, analytic: dq, atol: 5e-4, indices: queryIndices) {
            weightedSum(dout, attentionForward(c, q: $0, k: k, v: v).out)
        }
        checkGradient("T2100 dk", at: k, analytic: dk, atol: 5e-4, indices: keyIndices) {
            weightedSum(dout, attentionForward(c, q: q, k: $0, v: v).out)
        }
        checkGradient("T2100 dv", at: v, analytic: dv, atol: 5e-4, indices: keyIndices) {
            weightedSum(dout, attentionForward(c, q: q, k: k, v: $0).out)
        }
    }
}

// MARK: - SwiGLU

func checkSwiGLU(R: Int, F: Int, file: StaticString = #filePath, line: UInt = #line) {
    var rng = TestRNG(seed: UInt64(R * 97 + F))
    let n = R * F
    let gate = rng.vector(n, -6, 6), up = rng.vector(n, -2, 2), dout = rng.vector(n)
    var out = [Float](repeating: 0, count: n)
    kk_swiglu_forward(&out, gate, up, Int64(R), Int64(F))
    let want = (0..<n).map { i in Double(gate[i]) / (1 + exp(-Double(gate[i]))) * Double(up[i]) }
    assertClose(out, want, atol: 1e-6, rtol: 1e-6, "swiglu forward R\(R) F\(F)", file: file, line: line)
    var dgate = [Float](repeating: -1, count: n), dup = dgate
    kk_swiglu_backward(&dgate, &dup, dout, gate, up, Int64(R), Int64(F))
    dgate = dgate.map { $0 + 1 }
    dup = dup.map { $0 + 1 }
    func loss(_ g: [Float], _ u: [Float]) -> Double {
        var y = [Float](repeating: 0, count: n)
        kk_swiglu_forward(&y, g, u, Int64(R), Int64(F))
        return weightedSum(dout, y)
    }
    checkGradient("swiglu dgate R\(R) F\(F)", at: gate, analytic: dgate, atol: 1e-4, file: file, line: line) { loss($0, up) }
    checkGradient("swiglu dup R\(R) F\(F)", at: up, analytic: dup, atol: 1e-4, file: file, line: line) { loss(gate, $0) }
}

final class SwiGLUTests: XCTestCase {
    func testSwiGLU1x1() { checkSwiGLU(R: 1, F: 1) }
    func testSwiGLU3x5() { checkSwiGLU(R: 3, F: 5) }
    func testSwiGLU4x16() { checkSwiGLU(R: 4, F: 16) }
    func testSwiGLU7x45() { checkSwiGLU(R: 7, F: 45) }
    func testSwiGLUExtremes() {
        var out = [Float](repeating: 0, count: 4)
        kk_swiglu_forward(&out, [-100, 100, 0, -20], [1, 1, 1, 1], 1, 4)
        XCTAssertLessThan(abs(out[0]), 1e-30)
        XCTAssertEqual(out[1], 100)
        XCTAssertEqual(out[2], 0)
        XCTAssertEqual(Double(out[3]), -20 * exp(-20.0), accuracy: 1e-12)
    }
}

// MARK: - Log-softmax, log-probs, entropy

func checkLogProb(R: Int, V: Int, invTemperature: Float, spread: Float,
                  file: StaticString = #filePath, line: UInt = #line) {
    var rng = TestRNG(seed: UInt64(R * 10_007 + V))
    var logits = rng.vector(R * V, -spread, spread)
    var targets: [Int32] = (0..<R).map { _ in Int32(rng.index(V)) }
    if R > 1 && V > 3 { // a masked (−inf) logit that is not the target
        logits[V + 2] = -.infinity
        if targets[1] == 2 { targets[1] = 0 }
    }
    var logp = [Float](repeating: 0, count: R), entropy = logp, lse = logp
    kk_logprob_entropy_forward(&logp, &entropy, &lse, logits, targets, Int64(R), Int64(V), invTemperature)
    var wantLogp = [Double](), wantEntropy = [Double](), wantLse = [Double]()
    for r in 0..<R {
        let s = (0..<V).map { Double(logits[r * V + $0]) * Double(invTemperature) }
        let m = s.max()!
        let l = m + log(s.reduce(0.0) { $0 + exp($1 - m) })
        wantLse.append(l)
        wantLogp.append(s[Int(targets[r])] - l)
        wantEntropy.append(s.reduce(0.0) { acc, x in x.isFinite ? acc - exp(x - l) * (x - l) : acc })
    }
    let name = "logp R\(R) V\(V) invT \(invTemperature)"
    assertClose(logp, wantLogp, atol: 2e-6, rtol: 1e-6, name, file: file, line: line)
    assertClose(entropy, wantEntropy, atol: 2e-6, rtol: 1e-5, name + " entropy", file: file, line: line)
    assertClose(lse, wantLse, atol: 2e-6, rtol: 1e-6, name + " lse", file: file, line: line)

    // the sampler's row functions share the bits; without entropy too
    var row = [Float](repeating: 0, count: V), probs = row
    for r in 0..<R {
        let rowLogits = Array(logits[(r * V)..<((r + 1) * V)])
        let l1 = kk_logsoftmax_row(&row, rowLogits, Int64(V), invTemperature)
        XCTAssertEqual(row[Int(targets[r])].bitPattern, logp[r].bitPattern, name + " logsoftmax_row", file: file, line: line)
        XCTAssertEqual(l1.bitPattern, lse[r].bitPattern, name + " logsoftmax_row lse", file: file, line: line)
        let l2 = kk_softmax_row(&probs, rowLogits, Int64(V), invTemperature)
        XCTAssertEqual(l2.bitPattern, lse[r].bitPattern, name + " softmax_row lse", file: file, line: line)
        let wantProbs = rowLogits.map { exp(Double($0) * Double(invTemperature) - wantLse[r]) }
        assertClose(probs, wantProbs, atol: 1e-7, rtol: 1e-5, name + " softmax_row", file: file, line: line)
    }
    var logpOnly = [Float](repeating: 0, count: R)
    kk_logprob_entropy_forward(&logpOnly, nil, nil, logits, targets, Int64(R), Int64(V), invTemperature)
    assertBitsEqual(logpOnly, logp, name + " without entropy", file: file, line: line)

    // backward OVERWRITES: start from garbage
    let dlogp = rng.vector(R)
    var dlogits = rng.vector(R * V, 100, 200)
    kk_logprob_backward(&dlogits, dlogp, logits, targets, lse, Int64(R), Int64(V), invTemperature)
    if R > 1 && V > 3 { XCTAssertEqual(dlogits[V + 2], 0, name + " gradient of a −inf logit", file: file, line: line) }
    // noise floor: |logp| ≤ 2·spread·invT + log V has an ulp ≈ 1.2e-7·|logp|, over 2h = 0.1,
    // twice; h = 0.05 keeps truncation (~h²·p/6) far below it
    checkGradient(name, at: logits, analytic: dlogits, h: 5e-2,
                  atol: 1e-5 + 3e-6 * (2 * Double(spread * invTemperature) + log(Double(V))),
                  indices: logits.indices.filter { logits[$0].isFinite }, file: file, line: line) { x in
        var y = [Float](repeating: 0, count: R)
        kk_logprob_entropy_forward(&y, nil, nil, x, targets, Int64(R), Int64(V), invTemperature)
        return weightedSum(dlogp, y)
    }
}

final class SoftmaxTests: XCTestCase {
    func testLogProbSingleton() { checkLogProb(R: 1, V: 1, invTemperature: 1, spread: 3) }
    func testLogProbSmall() { checkLogProb(R: 3, V: 5, invTemperature: 1, spread: 3) }
    func testLogProbTemperature() { checkLogProb(R: 4, V: 8, invTemperature: 0.7, spread: 3) }
    func testLogProbOddVocab() { checkLogProb(R: 5, V: 37, invTemperature: 1 / 0.6, spread: 5) }
    func testLogProbPeaked() { checkLogProb(R: 3, V: 300, invTemperature: 1, spread: 20) }
    func testLogProbLargeVocab() { checkLogProb(R: 2, V: 1003, invTemperature: 1, spread: 2) }
    func testUniformDistribution() {
        var logp: Float = 0, entropy: Float = 0, lse: Float = 0
        kk_logprob_entropy_forward(&logp, &entropy, &lse, [Float](repeating: 0, count: 64), [5], 1, 64, 1)
        XCTAssertEqual(Double(logp), -log(64.0), accuracy: 1e-6)
        XCTAssertEqual(Double(entropy), log(64.0), accuracy: 1e-6)
    }
}

// MARK: - MoE routing

func checkRouter(R: Int, E: Int, k: Int, normalize: Bool, file: StaticString = #filePath, line: UInt = #line) {
    var rng = TestRNG(seed: UInt64(R * 1000 + E * 10 + k))
    let logits = rng.vector(R * E, -2, 2)
    let norm: Int32 = normalize ? 1 : 0
    var experts = [Int32](repeating: 0, count: R * k), gates = [Float](repeating: 0, count: R * k)
    var probs = [Float](repeating: 0, count: R * E)
    kk_router_forward(&experts, &gates, &probs, logits, nil, Int64(R), Int32(E), Int32(k), norm)
    let name = "router R\(R) E\(E) k\(k) norm \(normalize)"
    for r in 0..<R {
        let row = (0..<E).map { Double(logits[r * E + $0]) }
        let m = row.max()!, z = row.reduce(0.0) { $0 + exp($1 - m) }
        let want = row.map { exp($0 - m) / z }
        assertClose(Array(probs[(r * E)..<((r + 1) * E)]), want, atol: 1e-7, rtol: 1e-5, name + " probs", file: file, line: line)
        // slot s holds the expert of rank s in (probability descending, index ascending)
        var chosenSum = 0.0
        for s in 0..<k {
            let e = Int(experts[r * k + s])
            let rank = (0..<E).filter { f in probs[r * E + f] > probs[r * E + e] || (probs[r * E + f] == probs[r * E + e] && f < e) }.count
            XCTAssertEqual(rank, s, name + " slot order", file: file, line: line)
            chosenSum += want[e]
        }
        for s in 0..<k {
            let p = want[Int(experts[r * k + s])]
            XCTAssertEqual(Double(gates[r * k + s]), normalize ? p / chosenSum : p, accuracy: 1e-6 + 1e-5 * p, name + " gate", file: file, line: line)
        }
    }
    // replay of the natural choice reproduces it bit for bit
    var replayExperts = experts, replayGates = gates, replayProbs = probs
    kk_router_forward(&replayExperts, &replayGates, &replayProbs, logits, experts, Int64(R), Int32(E), Int32(k), norm)
    XCTAssertEqual(replayExperts, experts, name + " replay experts", file: file, line: line)
    assertBitsEqual(replayGates, gates, name + " replay gates", file: file, line: line)
    // a forced, different choice keeps the given slot order; gradients through it
    let forced: [Int32] = (0..<(R * k)).map { i in Int32((Int(experts[i]) + 1 + (i / k) % 2) % E) }
    let distinct = (0..<R).allSatisfy { r in Set(forced[(r * k)..<((r + 1) * k)]).count == k }
    guard distinct else { return }
    kk_router_forward(&replayExperts, &replayGates, &replayProbs, logits, forced, Int64(R), Int32(E), Int32(k), norm)
    XCTAssertEqual(replayExperts, forced, name + " forced slot order", file: file, line: line)
    let dgates = rng.vector(R * k)
    var dlogits = [Float](repeating: 0.125, count: R * E)
    kk_router_backward(&dlogits, dgates, replayProbs, replayExperts, Int64(R), Int32(E), Int32(k), norm)
    dlogits = dlogits.map { $0 - 0.125 }
    func forward(_ x: [Float]) -> (gates: [Float], probs: [Float], experts: [Int32]) {
        var ex = [Int32](repeating: 0, count: R * k), g = [Float](repeating: 0, count: R * k), p = [Float](repeating: 0, count: R * E)
        kk_router_forward(&ex, &g, &p, x, forced, Int64(R), Int32(E), Int32(k), norm)
        return (g, p, ex)
    }
    // loss Σ w·gates ~ 1: float noise ~1.2e-7 / 2h = 6e-6
    checkGradient(name, at: logits, analytic: dlogits, atol: 3e-5, file: file, line: line) { weightedSum(dgates, forward($0).gates) }
    // load-balancing loss: value against Double, gradient with the choice held fixed
    let coef: Float = 0.01
    var dAux = [Float](repeating: 0, count: R * E)
    let aux = kk_router_aux_loss(&dAux, replayProbs, replayExperts, Int64(R), Int32(E), Int32(k), coef)
    var count = [Double](repeating: 0, count: E), meanProb = [Double](repeating: 0, count: E)
    for r in 0..<R {
        for s in 0..<k { count[Int(replayExperts[r * k + s])] += 1 }
        for e in 0..<E { meanProb[e] += Double(replayProbs[r * E + e]) }
    }
    var wantAux = 0.0
    for e in 0..<E { wantAux += count[e] / Double(R) * meanProb[e] / Double(R) }
    wantAux *= Double(coef) * Double(E)
    XCTAssertEqual(Double(aux), wantAux, accuracy: 1e-7 + 1e-5 * wantAux, name + " aux loss", file: file, line: line)
    // the loss is a float of ~coef·k (ulp ≤ 4e-9: noise ≤ 3e-7 after /2h) and its gradients are
    // ~1e-5…3e-4; h = 0.05 would cost ~2e-6 of truncation error, so h = 1e-2, atol 1e-6
    checkGradient(name + " aux", at: logits, analytic: dAux, atol: 1e-6, file: file, line: line) { x in
        let f = forward(x)
        return Double(kk_router_aux_loss(nil, f.probs, f.experts, Int64(R), Int32(E), Int32(k), coef))
    }
}

final class RoutingTests: XCTestCase {
    func testRouterTop2of8Normalized() { checkRouter(R: 5, E: 8, k: 2, normalize: true) }
    func testRouterTop2of8Raw() { checkRouter(R: 5, E: 8, k: 2, normalize: false) }
    func testRouterTop1Normalized() { checkRouter(R: 4, E: 4, k: 1, normalize: true) }
    func testRouterTop1Raw() { checkRouter(R: 4, E: 4, k: 1, normalize: false) }
    func testRouterTop4of16Normalized() { checkRouter(R: 3, E: 16, k: 4, normalize: true) }
    func testRouterTop4of16Raw() { checkRouter(R: 3, E: 16, k: 4, normalize: false) }
    func testRouterAllExperts() { checkRouter(R: 6, E: 5, k: 5, normalize: true) }

    func testRouterTiesGoToTheLowerIndex() {
        var experts = [Int32](repeating: 0, count: 3), gates = [Float](repeating: 0, count: 3), probs = [Float](repeating: 0, count: 6)
        kk_router_forward(&experts, &gates, &probs, [1, 3, 3, 0, 3, 1], nil, 1, 6, 3, 1)
        XCTAssertEqual(experts, [1, 2, 4])
        XCTAssertEqual(Double(gates[0]), 1.0 / 3, accuracy: 1e-7)
        XCTAssertEqual(gates[0], gates[1])
        XCTAssertEqual(gates[1], gates[2])
    }

    /// Non-finite router logits (a NaN weight upstream) never yield an expert outside 0..E-1:
    /// NaN ranks below every number, so the k choices stay distinct and valid (before: expert −1,
    /// and the caller read p[−1]).
    func testRouterWithNaNLogitsStillChoosesValidDistinctExperts() {
        for logits: [Float] in [[.nan, .nan, .nan, .nan, .nan, .nan], [0.5, .nan, 2, .nan, 1, 0], [.infinity, 1, .nan, -.infinity, 0, 2]] {
            for k in 1...4 {
                var experts = [Int32](repeating: 99, count: k), gates = [Float](repeating: 0, count: k), probs = [Float](repeating: 0, count: 6)
                kk_router_forward(&experts, &gates, &probs, logits, nil, 1, 6, Int32(k), 1)
                XCTAssertTrue(experts.allSatisfy { (0..<6).contains($0) }, "\(logits) k \(k): \(experts)")
                XCTAssertEqual(Set(experts).count, k, "\(logits) k \(k): \(experts)")
            }
        }
        // finite probabilities still come first when some are NaN
        var experts = [Int32](repeating: 0, count: 2), gates = [Float](repeating: 0, count: 2), probs = [Float](repeating: 0, count: 3)
        kk_router_forward(&experts, &gates, &probs, [1, 2, 3], nil, 1, 3, 2, 1)
        XCTAssertEqual(experts, [2, 1])
    }

    /// kk_moe_combine and kk_moe_gate_grad against the fma chains written out in Swift, bit for
    /// bit (C a multiple of 8 and not: whole vectors and the scalar tail), and against Double.
    func testMoECombineAndGateGradAreTheFMAChains() {
        var rng = TestRNG(seed: 21)
        for (R, k, C) in [(5, 2, 16), (3, 3, 13), (4, 1, 7), (2, 4, 128)] {
            let y = rng.vector(R * k * C), gates = rng.vector(R * k, 0, 1), dout = rng.vector(R * C)
            var out = [Float](repeating: .nan, count: R * C), dgates = [Float](repeating: .nan, count: R * k)
            kk_moe_combine(&out, y, gates, Int64(R), Int32(k), Int64(C))
            kk_moe_gate_grad(&dgates, dout, y, Int64(R), Int32(k), Int64(C))
            var wantOut = [Float](repeating: 0, count: R * C), wantG = [Float](repeating: 0, count: R * k)
            var dblOut = [Double](repeating: 0, count: R * C), dblG = [Double](repeating: 0, count: R * k)
            for r in 0..<R {
                for s in 0..<k {
                    for i in 0..<C {
                        wantOut[r * C + i] = wantOut[r * C + i].addingProduct(gates[r * k + s], y[(r * k + s) * C + i])
                        dblOut[r * C + i] += Double(gates[r * k + s]) * Double(y[(r * k + s) * C + i])
                        wantG[r * k + s] = wantG[r * k + s].addingProduct(dout[r * C + i], y[(r * k + s) * C + i])
                        dblG[r * k + s] += Double(dout[r * C + i]) * Double(y[(r * k + s) * C + i])
                    }
                }
            }
            assertBitsEqual(out, wantOut, "combine R\(R) k\(k) C\(C)")
            assertBitsEqual(dgates, wantG, "gate grad R\(R) k\(k) C\(C)")
            assertClose(out, dblOut, atol: 1e-6, rtol: 1e-5, "combine vs Double")
            assertClose(dgates, dblG, atol: 1e-5, rtol: 1e-5, "gate grad vs Double")
        }
    }

    func testNormalizedGatesAreTheSoftmaxOfTheChosenLogits() {
        var experts = [Int32](repeating: 0, count: 2), gates = [Float](repeating: 0, count: 2), probs = [Float](repeating: 0, count: 4)
        kk_router_forward(&experts, &gates, &probs, [0.5, -1, 2, 1], nil, 1, 4, 2, 1)
        XCTAssertEqual(experts, [2, 3])
        XCTAssertEqual(Double(gates[0]), exp(2.0) / (exp(1.0) + exp(2.0)), accuracy: 1e-6)
        XCTAssertEqual(Double(gates[1]), exp(1.0) / (exp(1.0) + exp(2.0)), accuracy: 1e-6)
        kk_router_forward(&experts, &gates, &probs, [0.5, -1, 2, 1], nil, 1, 4, 2, 0)
        XCTAssertEqual(gates[0], probs[2])
        XCTAssertEqual(gates[1], probs[3])
    }
}

// MARK: - AdamW

final class AdamWTests: XCTestCase {
    func testAdamWMatchesTheDoubleFormula() {
        var rng = TestRNG(seed: 13)
        let n = 37
        var p = rng.vector(n), m = [Float](repeating: 0, count: n), v = m
        var pd = p.map(Double.init), md = [Double](repeating: 0, count: n), vd = md
        let lr: Float = 1e-2, b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8, wd: Float = 0.1
        for step in 1...5 {
            let g = rng.vector(n)
            kk_adamw(&p, g, &m, &v, Int64(n), lr, b1, b2, eps, wd, Int64(step))
            for i in 0..<n {
                pd[i] *= 1 - Double(lr) * Double(wd)
                md[i] = Double(b1) * md[i] + (1 - Double(b1)) * Double(g[i])
                vd[i] = Double(b2) * vd[i] + (1 - Double(b2)) * Double(g[i]) * Double(g[i])
                let mHat = md[i] / (1 - pow(Double(b1), Double(step))), vHat = vd[i] / (1 - pow(Double(b2), Double(step)))
                pd[i] -= Double(lr) * mHat / (vHat.squareRoot() + Double(eps))
            }
        }
        assertClose(p, pd, atol: 1e-6, rtol: 1e-5, "adamw params after 5 steps")
        assertClose(m, md, atol: 1e-7, rtol: 1e-5, "adamw m")
        assertClose(v, vd, atol: 1e-9, rtol: 1e-5, "adamw v")
    }

    func testAdamWFirstStepMovesByTheLearningRate() {
        var p: [Float] = [1, 1, 1], m: [Float] = [0, 0, 0], v: [Float] = [0, 0, 0]
        kk_adamw(&p, [0.5, -2, 1e-3], &m, &v, 3, 0.1, 0.9, 0.999, 1e-8, 0, 1)
        XCTAssertEqual(p[0], 0.9, accuracy: 1e-6)
        XCTAssertEqual(p[1], 1.1, accuracy: 1e-6)
        XCTAssertEqual(p[2], 0.9, accuracy: 1e-5)
    }
}

// MARK: - Reduced-precision rounding

func bf16(_ x: Float) -> Float { var y = [x]; kk_round_bf16(&y, 1); return y[0] }
func fp16(_ x: Float) -> Float { var y = [x]; kk_round_fp16(&y, 1); return y[0] }

/// Independent e4m3fn reference: the nearest of the finite values (max 448), ties to the
/// code with an even mantissa, saturating.
func e4m3Reference(_ x: Float) -> Float {
    if x.isNaN { return x }
    let a = abs(Double(x))
    var best = 0.0, bestDistance = Double.infinity
    for code in 0..<127 { // 0x7F is NaN
        let e = code >> 3, mantissa = code & 7
        let value = e == 0 ? Double(mantissa) / 8 * pow(2, -6) : (1 + Double(mantissa) / 8) * pow(2, Double(e - 7))
        let d = abs(a - value)
        if d < bestDistance || (d == bestDistance && code & 1 == 0) { bestDistance = d; best = value }
    }
    if a >= 448 { best = 448 }
    return x.sign == .minus ? -Float(best) : Float(best)
}

final class RoundingTests: XCTestCase {
    func testBF16TiesToEven() {
        XCTAssertEqual(bf16(1 + 0x1p-8), 1)
        XCTAssertEqual(bf16(1 + 3 * 0x1p-8), 1 + 0x1p-6)
        XCTAssertEqual(bf16(1 + 0x1p-8 + 0x1p-20), 1 + 0x1p-7)
        XCTAssertEqual(bf16(Float(bitPattern: 0x0000_8000)), 0)
        XCTAssertEqual(bf16(Float(bitPattern: 0x0001_8000)), Float(bitPattern: 0x0002_0000))
    }

    func testBF16SpecialValues() {
        XCTAssertTrue(bf16(Float(bitPattern: 0x7F80_0001)).isNaN, "a NaN with only low payload bits stays NaN")
        XCTAssertTrue(bf16(.nan).isNaN)
        XCTAssertEqual(bf16(.infinity), .infinity)
        XCTAssertEqual(bf16(-.infinity), -.infinity)
        XCTAssertEqual(bf16(.greatestFiniteMagnitude), .infinity)
        XCTAssertEqual(bf16(Float(bitPattern: 0x7F7F_0000)), Float(bitPattern: 0x7F7F_0000))
        XCTAssertEqual(bf16(-0.0).bitPattern, 0x8000_0000)
    }

    func testBF16RandomBitPatterns() {
        var rng = TestRNG(seed: 14)
        let x = (0..<1003).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
        var y = x
        kk_round_bf16(&y, Int64(y.count))
        for i in x.indices {
            if x[i].isNaN { XCTAssertTrue(y[i].isNaN); continue }
            let u = x[i].bitPattern, low = u & 0xFFFF, high = u & 0xFFFF_0000
            let want = low > 0x8000 || (low == 0x8000 && high & 0x1_0000 != 0) ? high &+ 0x1_0000 : high
            XCTAssertEqual(y[i].bitPattern, want, "bf16 of \(x[i])")
        }
    }

    /// 16-bit storage (the sampler's compact KV cache): store then load gives the rounded value
    /// bit for bit; the stored patterns are bf16's top 16 bits and Swift's own Float16 (an
    /// independent binary16 conversion). 1003 values: whole vectors and a tail.
    func testSixteenBitStorageRoundTrips() {
        var rng = TestRNG(seed: 15)
        let x = (0..<1003).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
            + [0, -0.0, .infinity, -.infinity, 65504, 65520, 0x1p-24, 1e-30, 3.14159]
        var pats = [UInt16](repeating: 0, count: x.count), y = [Float](repeating: 0, count: x.count)
        kk_store_bf16(&pats, x, Int64(x.count))
        kk_load_bf16(&y, pats, Int64(x.count))
        for i in x.indices {
            let r = bf16(x[i])
            if x[i].isNaN { XCTAssertTrue(y[i].isNaN, "bf16 NaN stays NaN"); continue }
            XCTAssertEqual(pats[i], UInt16(r.bitPattern >> 16), "bf16 pattern of \(x[i])")
            XCTAssertEqual(y[i].bitPattern, r.bitPattern, "bf16 round trip of \(x[i])")
        }
        kk_store_fp16(&pats, x, Int64(x.count))
        kk_load_fp16(&y, pats, Int64(x.count))
        for i in x.indices {
            if x[i].isNaN { XCTAssertTrue(y[i].isNaN, "fp16 NaN stays NaN"); continue }
            XCTAssertEqual(pats[i], Float16(x[i]).bitPattern, "fp16 pattern of \(x[i])")
            XCTAssertEqual(y[i].bitPattern, fp16(x[i]).bitPattern, "fp16 round trip of \(x[i])")
        }
    }

    func testFP16RangeAndSubnormals() {
        XCTAssertEqual(fp16(65504), 65504)
        XCTAssertEqual(fp16(65519), 65504)
        XCTAssertEqual(fp16(65520), .infinity)
        XCTAssertEqual(fp16(-1e6), -.infinity)
        XCTAssertEqual(fp16(0x1p-24), 0x1p-24)
        XCTAssertEqual(fp16(0x1p-25), 0, "tie at half the smallest subnormal goes to even (0)")
        XCTAssertEqual(fp16(0x1.8p-25), 0x1p-24)
        XCTAssertEqual(fp16(3 * 0x1p-25), 0x1p-23, "subnormal tie goes to even")
        XCTAssertEqual(fp16(1 + 0x1p-11), 1)
        XCTAssertEqual(fp16(1 + 3 * 0x1p-11), 1 + 0x1p-9)
        XCTAssertEqual(fp16(0.1), 0.0999755859375)
        XCTAssertTrue(fp16(.nan).isNaN)
        XCTAssertEqual(fp16(.infinity), .infinity)
    }

    func testFP16ArrayMatchesElementwise() {
        var rng = TestRNG(seed: 15)
        let x = rng.vector(13, -70_000, 70_000)
        var y = x
        kk_round_fp16(&y, Int64(y.count))
        assertBitsEqual(y, x.map(fp16), "fp16 array")
    }

    func testE4M3SaturationAndSpecials() {
        XCTAssertEqual(kk_round_e4m3(448), 448)
        XCTAssertEqual(kk_round_e4m3(449), 448)
        XCTAssertEqual(kk_round_e4m3(464), 448)
        XCTAssertEqual(kk_round_e4m3(1e6), 448)
        XCTAssertEqual(kk_round_e4m3(-1e6), -448)
        XCTAssertEqual(kk_round_e4m3(.infinity), 448)
        XCTAssertEqual(kk_round_e4m3(-.infinity), -448)
        XCTAssertTrue(kk_round_e4m3(.nan).isNaN)
        XCTAssertEqual(kk_round_e4m3(-0.0).bitPattern, 0x8000_0000)
        XCTAssertEqual(kk_round_e4m3(-1e-9).bitPattern, 0x8000_0000)
    }

    func testE4M3ExactValuesAndTies() {
        XCTAssertEqual(kk_round_e4m3(1), 1)
        XCTAssertEqual(kk_round_e4m3(1.125), 1.125)
        XCTAssertEqual(kk_round_e4m3(-1.75), -1.75)
        XCTAssertEqual(kk_round_e4m3(1.0625), 1, "tie to even")
        XCTAssertEqual(kk_round_e4m3(1.1875), 1.25, "tie to even")
        XCTAssertEqual(kk_round_e4m3(240), 240)
        XCTAssertEqual(kk_round_e4m3(248), 256)
        XCTAssertEqual(kk_round_e4m3(250), 256)
        XCTAssertEqual(kk_round_e4m3(0x1p-6), 0x1p-6, "min normal")
        XCTAssertEqual(kk_round_e4m3(0x1p-9), 0x1p-9, "min subnormal")
        XCTAssertEqual(kk_round_e4m3(0x1p-10), 0, "subnormal tie to even")
        XCTAssertEqual(kk_round_e4m3(3 * 0x1p-10), 0x1p-8, "subnormal tie to even")
        XCTAssertEqual(kk_round_e4m3(0.013671875), 0.013671875, "largest subnormal 7·2^-9")
        XCTAssertEqual(kk_round_e4m3(0.0146484375), 0x1p-6, "7.5·2^-9 ties up to 2^-6")
    }

    func testE4M3MatchesTheTableReference() {
        var rng = TestRNG(seed: 16)
        for i in 0..<20_000 {
            var x = rng.uniform(-1, 1) * Float(pow(2.0, Double(rng.uniform(-12, 10))))
            if i % 7 == 0 { // exact midpoints between neighbouring e4m3 values
                let a = e4m3Reference(abs(x)), b = e4m3Reference(a * 1.2)
                x = (a + b) / 2
            }
            let got = kk_round_e4m3(x), want = e4m3Reference(x)
            if got.bitPattern != want.bitPattern { XCTFail("e4m3(\(x)) = \(got), want \(want)"); return }
        }
    }

    func testFP8PerChannelQuantization() {
        var rng = TestRNG(seed: 17)
        let N = 5, K = 19
        var w = rng.vector(N * K, -0.3, 0.3)
        for k in 0..<K { w[2 * K + k] = 0 } // an all-zero row
        w[3 * K + 4] = -2.5                  // a row whose max is negative
        let original = w
        var scales = [Float](repeating: 0, count: N)
        kk_quantize_fp8_e4m3_rows(&w, &scales, Int64(N), Int64(K))
        for n in 0..<N {
            let amax = original[(n * K)..<((n + 1) * K)].map { abs($0) }.max()!
            let scale: Float = amax > 0 ? amax / 448 : 1
            XCTAssertEqual(scales[n], scale)
            for k in 0..<K {
                let x = original[n * K + k]
                XCTAssertEqual(w[n * K + k].bitPattern, (kk_round_e4m3(x / scale) * scale).bitPattern)
                XCTAssertLessThanOrEqual(abs(w[n * K + k] - x), 0.0625 * abs(x) + scale * 0x1p-10)
            }
        }
        XCTAssertEqual(scales[2], 1)
        XCTAssertEqual(w[3 * K + 4], -2.5, accuracy: 1e-6)
    }
}

// MARK: - Exact mode end to end

/// A one-layer attention model scored by the "trainer" (whole sequence: packed gemm,
/// kk_attention_forward, kk_logprob_entropy_forward) and by the "sampler" (one token at a
/// time: M = 1 gemm, a KV cache with its own layout, RoPE tables, kk_logsoftmax_row) gives
/// bit-identical log-probs.
final class ExactModeTests: XCTestCase {
    func testDecodeAndFullSequenceLogProbsAreIdentical() {
        var rng = TestRNG(seed: 18)
        let T = 40, C = 256, H = 6, KV = 2, D = 64, V = 300
        let QKV = (H + 2 * KV) * D // qkv weight 256×640 = 655 KB: the trainer's gemm packs
        let x = rng.vector(T * C), normWeight = rng.vector(C, 0.8, 1.2)
        let wqkv = rng.vector(C * QKV, -0.1, 0.1), qNorm = rng.vector(D, 0.8, 1.2), kNorm = rng.vector(D, 0.8, 1.2)
        let wo = rng.vector(H * D * C, -0.1, 0.1), wlm = rng.vector(C * V, -0.2, 0.2)
        let positions = (0..<T).map { Int32($0) }
        let targets = (0..<T).map { _ in Int32(rng.index(V)) }
        let scale = 1 / Float(D).squareRoot(), eps: Float = 1e-6

        // trainer
        var h = [Float](repeating: 0, count: T * C), qkv = [Float](repeating: 0, count: T * QKV)
        kk_rmsnorm_forward(&h, nil, x, normWeight, Int64(T), Int64(C), eps)
        kk_gemm(&qkv, h, wqkv, Int64(T), Int64(QKV), Int64(C), Int64(C), 1, Int64(QKV), Int64(QKV), 0)
        var qRaw = [Float](), kRaw = [Float](), v = [Float]()
        for t in 0..<T {
            qRaw += qkv[(t * QKV)..<(t * QKV + H * D)]
            kRaw += qkv[(t * QKV + H * D)..<(t * QKV + (H + KV) * D)]
            v += qkv[(t * QKV + (H + KV) * D)..<((t + 1) * QKV)]
        }
        var q = [Float](repeating: 0, count: T * H * D), k = [Float](repeating: 0, count: T * KV * D)
        kk_rmsnorm_forward(&q, nil, qRaw, qNorm, Int64(T * H), Int64(D), eps)
        kk_rmsnorm_forward(&k, nil, kRaw, kNorm, Int64(T * KV), Int64(D), eps)
        kk_rope_forward(&q, positions, Int64(T), Int32(H), Int32(D), 1e6)
        kk_rope_forward(&k, positions, Int64(T), Int32(KV), Int32(D), 1e6)
        var att = [Float](repeating: 0, count: T * H * D), lse = [Float](repeating: 0, count: T * H)
        kk_attention_forward(&att, &lse, q, k, v, Int64(T), Int32(H), Int32(KV), Int32(D), scale)
        var y = [Float](repeating: 0, count: T * C)
        kk_gemm(&y, att, wo, Int64(T), Int64(C), Int64(H * D), Int64(H * D), 1, Int64(C), Int64(C), 0)
        for i in 0..<(T * C) { y[i] += x[i] }
        var logits = [Float](repeating: 0, count: T * V), logp = [Float](repeating: 0, count: T)
        kk_gemm(&logits, y, wlm, Int64(T), Int64(V), Int64(C), Int64(C), 1, Int64(V), Int64(V), 0)
        kk_logprob_entropy_forward(&logp, nil, nil, logits, targets, Int64(T), Int64(V), 1)

        // sampler: cache rows hold [k heads | v heads]
        let cacheStride = 2 * KV * D
        var cache = [Float](repeating: 0, count: T * cacheStride)
        var cosTable = [Float](repeating: 0, count: 64 * D / 2), sinTable = cosTable
        kk_rope_table(&cosTable, &sinTable, 64, Int32(D), 1e6)
        var sampled = [Float](repeating: 0, count: T)
        for t in 0..<T {
            var hs = [Float](repeating: 0, count: C), qkvs = [Float](repeating: 0, count: QKV)
            kk_rmsnorm_forward(&hs, nil, Array(x[(t * C)..<((t + 1) * C)]), normWeight, 1, Int64(C), eps)
            kk_gemm(&qkvs, hs, wqkv, 1, Int64(QKV), Int64(C), Int64(C), 1, Int64(QKV), Int64(QKV), 0)
            var qs = [Float](repeating: 0, count: H * D), ks = [Float](repeating: 0, count: KV * D)
            kk_rmsnorm_forward(&qs, nil, Array(qkvs[0..<(H * D)]), qNorm, Int64(H), Int64(D), eps)
            kk_rmsnorm_forward(&ks, nil, Array(qkvs[(H * D)..<((H + KV) * D)]), kNorm, Int64(KV), Int64(D), eps)
            kk_rope_forward_table(&qs, [positions[t]], cosTable, sinTable, 1, Int32(H), Int32(D))
            kk_rope_forward_table(&ks, [positions[t]], cosTable, sinTable, 1, Int32(KV), Int32(D))
            for e in 0..<(KV * D) {
                cache[t * cacheStride + e] = ks[e]
                cache[t * cacheStride + KV * D + e] = qkvs[(H + KV) * D + e]
            }
            var attRow = [Float](repeating: 0, count: H * D)
            cache.withUnsafeBufferPointer { c in
                kk_attention_row_forward(&attRow, nil, qs, c.baseAddress!, c.baseAddress! + KV * D, Int64(cacheStride),
                                         Int64(t + 1), Int32(H), Int32(KV), Int32(D), scale)
            }
            var ys = [Float](repeating: 0, count: C)
            kk_gemm(&ys, attRow, wo, 1, Int64(C), Int64(H * D), Int64(H * D), 1, Int64(C), Int64(C), 0)
            for i in 0..<C { ys[i] += x[t * C + i] }
            var rowLogits = [Float](repeating: 0, count: V), rowLogp = [Float](repeating: 0, count: V)
            kk_gemm(&rowLogits, ys, wlm, 1, Int64(V), Int64(C), Int64(C), 1, Int64(V), Int64(V), 0)
            _ = kk_logsoftmax_row(&rowLogp, rowLogits, Int64(V), 1)
            sampled[t] = rowLogp[Int(targets[t])]
        }
        assertBitsEqual(sampled, logp, "sampler log-probs == trainer log-probs")
    }
}
