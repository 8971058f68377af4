// CLITests.swift — the real `keel` binary, end to end: plugins list / inspect / check (a
// segfaulting plugin is reported as a crash and keel survives), new-plugin → make → check,
// include-dir and --version, compared against their expected output; `keel bench --json`
// against the FLOP formula of docs/performance.md, computed here from the config it prints.
import Foundation
import KeelPluginHost
import KeelTestSupport
import XCTest

final class CLITests: XCTestCase {
  func keel(_ args: [String], cwd: String? = nil, env: [String: String]? = nil) throws -> TestSupport.Output {
    try TestSupport.run(TestSupport.keel, args, cwd: cwd, environment: env)
  }

  func testVersionAndIncludeDir() throws {
    let v = try keel(["--version"])
    XCTAssertEqual(v.stdout, "keel \(KeelVersion.string) (plugin ABI 1.1)\n")
    let inc = try keel(["plugins", "include-dir"])
    XCTAssertEqual(inc.status, 0)
    XCTAssertEqual(inc.stdout.trimmingCharacters(in: .whitespacesAndNewlines), TestSupport.includeDir)
    XCTAssertTrue(FileManager.default.fileExists(atPath: TestSupport.includeDir + "/keel/keel_plugin.h"))
  }

  /// `keel bench --quick --json`: every documented key, and figures that agree with each other
  /// and with the FLOP formula recomputed by hand from the printed config and shapes
  /// (sampler: 2·P per generated token plus attention; train: 6·P per token plus 3× attention).
  func testBenchJSONFollowsTheFLOPFormula() throws {
    for model in ["dense", "moe"] {
      let r = try keel(["bench", "--quick", "--json", "--model", model, "--precisions", "fp32,bf16"])
      XCTAssertEqual(r.status, 0, r.stdout)
      let line = try XCTUnwrap(r.stdout.split(separator: "\n").last { $0.hasPrefix("{") }, r.stdout)
      let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], r.stdout)
      for key in ["sampler_tokens_per_s", "train_tokens_per_s", "gemm_gflops", "train_gflops", "sampler_gflops",
                  "peak_rss_bytes", "threads", "config", "shapes", "sampler_by_precision", "distribution_terms_vs_logprob_backward"] {
        XCTAssertNotNil(o[key], "\(key) missing from \(r.stdout)")
      }
      let terms = try XCTUnwrap(o["distribution_terms_vs_logprob_backward"] as? [String: [String: Double]])
      XCTAssertEqual(terms.count, 1)
      for ratios in terms.values {
        XCTAssertEqual(Set(ratios.keys), ["entropy_backward", "kl_forward", "kl_backward"])
        XCTAssertTrue(ratios.values.allSatisfy { $0 > 0 && $0.isFinite }, "\(ratios)")
      }
      let c = try XCTUnwrap(o["config"] as? [String: Any]).compactMapValues { $0 as? Int }, sh = try XCTUnwrap(o["shapes"] as? [String: Int])
      let C = c["hidden_size"]!, H = c["num_attention_heads"]!, KV = c["num_key_value_heads"]!, D = c["head_dim"]!
      let V = c["vocab_size"]!, Lyr = c["num_hidden_layers"]!
      let ffn = model == "dense"
        ? 3 * C * c["intermediate_size"]!
        : C * c["num_experts"]! + c["num_experts_per_tok"]! * 3 * C * c["moe_intermediate_size"]!
      let P = Double(Lyr * (C * H * D + 2 * C * KV * D + H * D * C + ffn) + C * V)
      func attention(_ positions: Range<Int>) -> Double { positions.reduce(0.0) { $0 + Double(4 * H * D * ($1 + 1) * Lyr) } }
      let prompt = sh["prompt_tokens"]!, gen = sh["generated_tokens"]!, B = sh["sampler_batch"]!
      let samplerFlopsPerToken = (2 * P * Double(B * gen) + Double(B) * attention(prompt..<(prompt + gen))) / Double(B * gen)
      let T = sh["train_tokens_per_sequence"]!
      let trainFlopsPerToken = (6 * P * Double(T) + 3 * attention(0..<T)) / Double(T)
      let gemm = o["gemm_gflops"] as! Double
      XCTAssertEqual(gemm, max(o["gemm_gflops_start"] as! Double, o["gemm_gflops_end"] as! Double))
      XCTAssertGreaterThan(gemm, 1)
      let st = o["sampler_tokens_per_s"] as! Double, sg = o["sampler_gflops"] as! Double
      XCTAssertEqual(sg * 1e9 / st, samplerFlopsPerToken, accuracy: 1e-6 * samplerFlopsPerToken)
      let tt = o["train_tokens_per_s"] as! Double, tg = o["train_gflops"] as! Double
      XCTAssertEqual(tg * 1e9 / tt, trainFlopsPerToken, accuracy: 1e-6 * trainFlopsPerToken)
      XCTAssertEqual(o["sampler_fraction_of_gemm"] as! Double, sg / gemm, accuracy: 1e-12)
      XCTAssertEqual(o["train_fraction_of_gemm"] as! Double, tg / gemm, accuracy: 1e-12)
      let byPrecision = try XCTUnwrap(o["sampler_by_precision"] as? [String: [String: Double]])
      XCTAssertEqual(Set(byPrecision.keys), ["fp32", "bf16"])
      XCTAssertEqual(byPrecision["fp32"]!["slowdown_vs_fp32"], 1)
      XCTAssertEqual(byPrecision["bf16"]!["slowdown_vs_fp32"]!, st / byPrecision["bf16"]!["tokens_per_s"]!, accuracy: 1e-9)
      XCTAssertGreaterThan(o["peak_rss_bytes"] as! Int, 1 << 20)
    }
    // --only: the other part's keys are absent, not zero
    for (part, present, absent) in [("sampler", "sampler_gflops", "train_gflops"), ("train", "train_gflops", "sampler_gflops")] {
      let r = try keel(["bench", "--quick", "--json", "--only", part])
      XCTAssertEqual(r.status, 0, r.stdout)
      let line = try XCTUnwrap(r.stdout.split(separator: "\n").last { $0.hasPrefix("{") }, r.stdout)
      let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], r.stdout)
      XCTAssertGreaterThan(o[present] as? Double ?? 0, 0, "--only \(part): \(present)")
      XCTAssertNil(o[absent], "--only \(part): \(absent) should be absent")
    }
    let bad = try keel(["bench", "--quick", "--precisions", "fp32,fp4"])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stdout.contains("'fp4'") && bad.stdout.contains("fp32, bf16, fp16, fp8, exact"), bad.stdout)
  }

  func testPluginsListShowsEveryBuiltinWithParameters() throws {
    let out = try keel(["plugins", "list"], env: ["KEEL_PLUGIN_PATH": ""])
    XCTAssertEqual(out.status, 0, out.stdout)
    let lines = out.stdout.split(separator: "\n").map(String.init)
    XCTAssertEqual(lines.first, "NAME               KIND       VERSION  ABI  PATH")
    for (name, kind) in [("minirl", "objective"), ("reinforce", "objective"), ("exact-match", "reward"), ("group-mean", "baseline")] {
      let row = try XCTUnwrap(lines.first { $0.hasPrefix(name + " ") }, "\(name) missing from:\n\(out.stdout)")
      let cols = row.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
      XCTAssertEqual(Array(cols[1...3]), [kind, "1.0.0", "1.1"])
      XCTAssertTrue(cols[4].hasSuffix("/libkeel-\(name).so"), cols[4])
    }
    XCTAssertTrue(lines.contains("    eps_low: float = 0.2 [0.0, 1.0] — lower clip: mask tokens with A < 0 and pi/pi_old < 1 - eps_low"), out.stdout)
    XCTAssertTrue(lines.contains { $0.hasPrefix("    tis_cap: float = 5.0") })
    XCTAssertTrue(lines.contains { $0.hasPrefix("    marker: string = \"\"") })
  }

  func testInspect() throws {
    let out = try keel(["plugins", "inspect", "minirl"])
    XCTAssertEqual(out.status, 0)
    XCTAssertTrue(out.stdout.contains("kind:        objective\n"))
    XCTAssertTrue(out.stdout.contains("aggregation: seq-mean-token-sum\n"))
    XCTAssertTrue(out.stdout.contains("  masked_fraction_low (token-mean)"))
    let bad = try keel(["plugins", "inspect", "minrl"])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stdout.contains("no plugin named 'minrl'"), bad.stdout)
  }

  func testCheckPassesOnEveryBuiltin() throws {
    for (name, count) in [("minirl", 8), ("reinforce", 8), ("exact-match", 3), ("group-mean", 3)] {
      let out = try keel(["plugins", "check", name])
      XCTAssertEqual(out.status, 0, out.stdout)
      XCTAssertTrue(out.stdout.hasSuffix("\(name): \(count) of \(count) checks passed\n"), out.stdout)
      XCTAssertFalse(out.stdout.contains("FAIL"))
    }
  }

  func testCheckReportsASegfaultingPluginAndSurvives() throws {
    let path = try TestSupport.fixture("segfault.c")
    let out = try keel(["plugins", "check", path])
    XCTAssertFalse(out.signaled, "keel itself must not crash")
    XCTAssertEqual(out.status, 1)
    XCTAssertTrue(out.stdout.contains("PASS empty batch"), out.stdout)
    XCTAssertTrue(out.stdout.contains("CRASH length-1 response: plugin 'fixture-segfault' (\(path)) crashed with signal 11 (SIGSEGV); keel survived"), out.stdout)
  }

  func testCheckReportsNaNAndWrongGradientAsFailures() throws {
    let nan = try keel(["plugins", "check", try TestSupport.fixture("nan_output.c")])
    XCTAssertEqual(nan.status, 1)
    XCTAssertTrue(nan.stdout.contains("FAIL length-1 response: plugin 'fixture-nan'"), nan.stdout)
    XCTAssertTrue(nan.stdout.contains("non-finite loss"), nan.stdout)
    let wrong = try keel(["plugins", "check", try TestSupport.fixture("wrong_grad.c")])
    XCTAssertEqual(wrong.status, 1)
    XCTAssertTrue(wrong.stdout.contains("FAIL finite differences: max |fd − grad| ="), wrong.stdout)
  }

  func testCheckLoadErrorsAreClearAndNonZero() throws {
    let out = try keel(["plugins", "check", try TestSupport.fixture("abi_major.c")])
    XCTAssertNotEqual(out.status, 0)
    XCTAssertTrue(out.stdout.contains("implements ABI 2.0 but this keel hosts ABI 1.1"), out.stdout)
    let params = try keel(["plugins", "check", "minirl", "--set", "eps_hihg=0.3"])
    XCTAssertNotEqual(params.status, 0)
    XCTAssertTrue(params.stdout.contains("did you mean 'eps_high'"), params.stdout)
  }

  func testNewPluginScaffoldBuildsAndPassesCheck() throws {
    let work = TestSupport.tempDir("keel-new")
    var langs = [("c", "objective"), ("c", "reward"), ("c", "baseline"), ("swift", "objective")]
    if TestSupport.which("cargo") != nil { langs.append(("rust", "objective")) } else { print("cargo absent: the Rust scaffold is not tested") }
    for (lang, kind) in langs {
      let name = "my-\(lang)-\(kind)"
      let out = try keel(["new-plugin", "--kind", kind, "--lang", lang, name], cwd: work)
      XCTAssertEqual(out.status, 0, out.stdout)
      XCTAssertTrue(out.stdout.hasPrefix("created \(kind) plugin '\(name)' (\(lang)) in \(name):\n"), out.stdout)
      // The Makefile calls this keel for the include directory: no flags needed.
      let make = try TestSupport.run("/usr/bin/make", ["-C", work + "/" + name, "CARGO=\(TestSupport.which("cargo") ?? "cargo")"])
      XCTAssertEqual(make.status, 0, make.stdout)
      let lib = "\(work)/\(name)/lib\(name).so"
      let check = try keel(["plugins", "check", lib])
      XCTAssertEqual(check.status, 0, check.stdout)
      let inspect = try keel(["plugins", "inspect", lib])
      XCTAssertTrue(inspect.stdout.hasPrefix("name:        \(name)\nkind:        \(kind)\n"), inspect.stdout)
      if lang == "swift" {
        // its parameters reach the instance (read by stepping the host's struct_size): on the one
        // token r = π_θ/π_old = e^0.2 ≈ 1.22 with Â = 1, so eps = 0.125 clips it (gradient 0,
        // loss −1.125) and eps = 0.5 does not (gradient −r)
        let batch = work + "/eps.json"
        try #"{"responses": [{"group": 0, "advantage": 1.0, "logp": [-0.1], "logp_old": [-0.3], "logp_rollout": [-0.3]}]}"#
          .write(toFile: batch, atomically: true, encoding: .utf8)
        let clipped = try keel(["plugins", "eval", lib, "--batch", batch, "--set", "eps=0.125", "--json"])
        XCTAssertTrue(clipped.stdout.contains("\"grad_logp\":[[0]]") && clipped.stdout.contains("\"loss\":-1.125"), clipped.stdout)
        let kept = try keel(["plugins", "eval", lib, "--batch", batch, "--set", "eps=0.5", "--json"])
        XCTAssertTrue(kept.stdout.contains("\"grad_logp\":[[-1.22"), kept.stdout)
      }
    }
    let again = try keel(["new-plugin", "--kind", "objective", "my-c-objective"], cwd: work)
    XCTAssertNotEqual(again.status, 0)
    XCTAssertTrue(again.stdout.contains("already exists"))
    let noTemplate = try keel(["new-plugin", "--kind", "reward", "--lang", "swift", "x"], cwd: work)
    XCTAssertNotEqual(noTemplate.status, 0)
    XCTAssertTrue(noTemplate.stdout.contains("no template for --lang swift --kind reward"), noTemplate.stdout)
  }
}

final class RustTemplateTrainTests: XCTestCase {
  /// The Rust template builds with cargo, passes the validator and trains one step.
  func testRustTemplateTrainsOneStep() throws {
    guard let cargo = TestSupport.which("cargo") else { throw XCTSkip("cargo is not installed: the Rust template is not tested") }
    let work = TestSupport.tempDir("keel-rust")
    let keel = TestSupport.keel
    XCTAssertEqual(try TestSupport.run(keel, ["new-plugin", "--kind", "objective", "--lang", "rust", "rusty"], cwd: work).status, 0)
    let make = try TestSupport.run("/usr/bin/make", ["-C", work + "/rusty", "CARGO=\(cargo)"])
    XCTAssertEqual(make.status, 0, make.stdout)
    let lib = work + "/rusty/librusty.so"
    let check = try TestSupport.run(keel, ["plugins", "check", lib])
    XCTAssertEqual(check.status, 0, check.stdout)
    let train = try TestSupport.run(keel, ["train", "--objective", lib, "--preset", "test", "--steps", "1", "--out", work + "/run", "--quiet"],
                                    environment: ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache"])
    XCTAssertEqual(train.status, 0, train.stdout)
    let metrics = try String(contentsOfFile: work + "/run/metrics.jsonl", encoding: .utf8)
    XCTAssertTrue(metrics.contains("\"step\":1"), metrics)
    let provenance = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: work + "/run/provenance.json"))) as! [String: Any]
    let objective = (provenance["plugins"] as! [[String: Any]]).first { $0["role"] as? String == "objective" }!
    XCTAssertEqual(objective["path"] as? String, lib)
    XCTAssertEqual(objective["name"] as? String, "rusty")
  }
}
