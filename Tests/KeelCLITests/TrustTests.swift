// TrustTests.swift — a config file cannot choose code to run. The reproducer (a
// --config naming libc's `system` as a foreign reward, with a JSONL prompt that is a shell
// command) is refused unless the user passes --trust, and the command never runs; a plugin a
// config file names by path loads only from a trusted place (--trust, KEEL_PLUGIN_PATH, the
// built-in directory) while the same path on the command line needs nothing; a resumed run's
// config.yaml is a file like any other; finding a plugin by name never runs an unrelated
// library's constructor (its ELF symbols are read first).
import Foundation
import KeelTestSupport
import XCTest

final class TrustTests: XCTestCase {
  let env = ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": ""]

  func testAConfigFileCannotRunLibcSystem() throws {
    let dir = TestSupport.tempDir("keel-trust")
    let marker = dir + "/PWNED"
    let data = dir + "/d.jsonl"
    let rows = (0..<40).map { "{\"prompt\": \"touch \(marker); \($0)=\", \"answer\": \"\($0)\"}" }
    try rows.joined(separator: "\n").write(toFile: data, atomically: true, encoding: .utf8)
    let yaml = """
    task: {name: \(data)}
    coldstart: {checkpoint: none}
    reward:
      foreign: {library: libc.so.6, symbol: system, signature: "(prompt: string) -> int"}
    """
    try yaml.write(toFile: dir + "/evil.yaml", atomically: true, encoding: .utf8)
    let r = try TestSupport.run(TestSupport.keel, ["train", "--config", dir + "/evil.yaml", "--out", dir + "/run", "--quiet", "--preset", "test",
                                                   "--steps", "1", "--set", "sampler.max_tokens=4"], environment: env)
    XCTAssertNotEqual(r.status, 0)
    XCTAssertFalse(r.signaled)
    XCTAssertTrue(r.stdout.contains("names 'libc.so.6' as reward.foreign.library") && r.stdout.contains("--trust libc.so.6"), r.stdout)
    XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "the command ran")
  }

  func testAPluginPathFromAFileNeedsTrustButNotFromTheCommandLine() throws {
    let dir = TestSupport.tempDir("keel-trust")
    let plugins = dir + "/mine"
    try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
    let lib = plugins + "/libmine.so"
    try FileManager.default.copyItem(atPath: TestSupport.binDir + "/libkeel-reinforce.so", toPath: lib)
    try "objective: {name: \(lib)}\ncoldstart: {checkpoint: none}\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
    func train(_ extra: [String], out: String) throws -> TestSupport.Output {
      try TestSupport.run(TestSupport.keel, ["train", "--out", dir + "/" + out, "--quiet", "--preset", "test", "--steps", "1"] + extra, environment: env)
    }
    let refused = try train(["--config", dir + "/c.yaml"], out: "a")
    XCTAssertNotEqual(refused.status, 0)
    XCTAssertTrue(refused.stdout.contains("c.yaml names '\(lib)' as objective.name") && refused.stdout.contains("--trust"), refused.stdout)
    XCTAssertEqual(try train(["--config", dir + "/c.yaml", "--trust", plugins], out: "b").status, 0)
    XCTAssertEqual(try train(["--config", dir + "/c.yaml", "--trust", lib], out: "c").status, 0)
    let cli = try train(["--objective", lib, "--set", "coldstart.checkpoint=none"], out: "d")
    XCTAssertEqual(cli.status, 0, cli.stdout)
    // KEEL_PLUGIN_PATH is trusted
    let viaPath = try TestSupport.run(TestSupport.keel, ["train", "--config", dir + "/c.yaml", "--out", dir + "/e", "--quiet", "--preset", "test", "--steps", "1"],
                                      environment: env.merging(["KEEL_PLUGIN_PATH": plugins]) { $1 })
    XCTAssertEqual(viaPath.status, 0, viaPath.stdout)
    // resuming: the run's config.yaml is a file, so its plugin path needs trust again
    let resumed = try TestSupport.run(TestSupport.keel, ["train", "--resume", dir + "/d", "--quiet", "--steps", "2"], environment: env)
    XCTAssertNotEqual(resumed.status, 0)
    XCTAssertTrue(resumed.stdout.contains("config.yaml names '\(lib)'"), resumed.stdout)
    let trusted = try TestSupport.run(TestSupport.keel, ["train", "--resume", dir + "/d", "--quiet", "--steps", "2", "--trust", lib], environment: env)
    XCTAssertEqual(trusted.status, 0, trusted.stdout)
  }

  func testFindingAPluginByNameNeverRunsOtherLibraries() throws {
    let dir = TestSupport.tempDir("keel-trust-scan")
    let marker = dir + "/CONSTRUCTOR_RAN"
    let src = dir + "/ctor.c"
    try """
    #include <stdio.h>
    __attribute__((constructor)) static void ran(void) { FILE *f = fopen("\(marker)", "w"); if (f) fclose(f); }
    int unrelated(void) { return 1; }
    """.write(toFile: src, atomically: true, encoding: .utf8)
    _ = try TestSupport.compileLibrary([src], into: dir, name: "libunrelated.so")
    _ = try TestSupport.compileLibrary([src], into: dir, name: "libkeel-ghost.so")
    // a name nobody has: every library of the directory is considered, none may run
    let r = try TestSupport.run(TestSupport.keel, ["train", "--out", dir + "/run", "--quiet", "--preset", "test", "--steps", "1",
                                                   "--objective", "ghost"], environment: env.merging(["KEEL_PLUGIN_PATH": dir]) { $1 })
    XCTAssertNotEqual(r.status, 0)
    XCTAssertTrue(r.stdout.contains("no plugin named 'ghost'"), r.stdout)
    XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "an unrelated library's constructor ran")
  }
}
