// InstallTests.swift — scripts/install.sh PREFIX, from the products already built (the test
// bundle's bin directory, --bin-dir: the script never builds then), and the installed keel
// working away from the source tree: it finds the header (`plugins include-dir` →
// PREFIX/include), the built-in plugins (PREFIX/lib/keel/plugins) and the templates
// (PREFIX/share/keel/templates) relative to its own executable, and a plugin scaffolded by it
// builds against the installed header (C, and Swift through the installed module map).
import Foundation
import KeelTestSupport
import XCTest

final class InstallTests: XCTestCase {
  /// The path with symlinks resolved: the installed keel locates PREFIX from /proc/self/exe.
  func resolved(_ path: String) -> String { (path as NSString).resolvingSymlinksInPath }

  func testInstalledKeelFindsHeaderPluginsAndTemplatesBesideItself() throws {
    let work = TestSupport.tempDir("keel-install")
    let prefix = work + "/prefix"
    let install = try TestSupport.run("/bin/bash", [TestSupport.root + "/scripts/install.sh", "--bin-dir", TestSupport.binDir, prefix])
    XCTAssertEqual(install.status, 0, install.stdout)
    XCTAssertFalse(install.stdout.contains("building"), "with --bin-dir the script must not build:\n\(install.stdout)")
    let fm = FileManager.default
    let keel = prefix + "/bin/keel"
    XCTAssertTrue(fm.isExecutableFile(atPath: keel))
    for file in ["include/keel/keel_plugin.h", "include/keel/module.modulemap", "lib/keel/plugins/libkeel-minirl.so",
                 "share/keel/templates/c/objective/plugin.c", "share/keel/templates/swift/objective/Plugin.swift",
                 "share/keel/templates/rust/objective/lib.rs", "share/doc/keel/abi.md"] {
      XCTAssertTrue(fm.fileExists(atPath: prefix + "/" + file), "\(file) not installed")
    }
    // The installed header is the source tree's, byte for byte.
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: prefix + "/include/keel/keel_plugin.h")),
                   try Data(contentsOf: URL(fileURLWithPath: TestSupport.includeDir + "/keel/keel_plugin.h")))
    // Every built-in plugin of the bin directory is installed.
    let builtins = (try fm.contentsOfDirectory(atPath: TestSupport.binDir)).filter { $0.hasPrefix("libkeel-") && $0.hasSuffix(".so") }
    XCTAssertFalse(builtins.isEmpty)
    for lib in builtins { XCTAssertTrue(fm.fileExists(atPath: prefix + "/lib/keel/plugins/" + lib), "\(lib) not installed") }

    let env = ["KEEL_PLUGIN_PATH": "", "KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache"]
    let root = resolved(prefix)

    // include-dir: PREFIX/include, not the source tree's.
    let inc = try TestSupport.run(keel, ["plugins", "include-dir"], environment: env)
    XCTAssertEqual(inc.status, 0, inc.stdout)
    let dir = inc.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    XCTAssertEqual(dir, root + "/include")
    XCTAssertTrue(fm.fileExists(atPath: dir + "/keel/keel_plugin.h"))

    // plugins list: the built-ins, loaded from PREFIX/lib/keel/plugins.
    let list = try TestSupport.run(keel, ["plugins", "list"], environment: env)
    XCTAssertEqual(list.status, 0, list.stdout)
    for name in ["minirl", "grpo", "exact-match", "group-mean"] {
      let row = list.stdout.split(separator: "\n").first { $0.hasPrefix(name + " ") }
      XCTAssertNotNil(row, "\(name) not listed:\n\(list.stdout)")
      XCTAssertTrue(row?.hasSuffix(root + "/lib/keel/plugins/libkeel-\(name).so") ?? false, "\(name): \(row ?? "")")
    }
    XCTAssertFalse(list.stdout.contains("BROKEN"), list.stdout)
    XCTAssertFalse(list.stdout.contains(resolved(TestSupport.binDir) + "/"), "a built-in was loaded from the build tree:\n\(list.stdout)")
    let inspect = try TestSupport.run(keel, ["plugins", "inspect", "minirl"], environment: env)
    XCTAssertTrue(inspect.stdout.contains("path:        \(root)/lib/keel/plugins/libkeel-minirl.so"), inspect.stdout)

    // new-plugin copies PREFIX/share/keel/templates (a marker added to the installed copy
    // shows up in the scaffold), and its Makefile builds against PREFIX/include.
    let marker = "installed-template-marker"
    let readme = prefix + "/share/keel/templates/c/objective/README.md"
    try (try String(contentsOfFile: readme, encoding: .utf8) + "\n" + marker + "\n").write(toFile: readme, atomically: true, encoding: .utf8)
    let scaffolds = work + "/scaffolds"
    try fm.createDirectory(atPath: scaffolds, withIntermediateDirectories: true)
    for lang in ["c", "swift"] {
      let name = "inst-\(lang)"
      let made = try TestSupport.run(keel, ["new-plugin", "--kind", "objective", "--lang", lang, name], cwd: scaffolds, environment: env)
      XCTAssertEqual(made.status, 0, made.stdout)
      let makefile = try String(contentsOfFile: "\(scaffolds)/\(name)/Makefile", encoding: .utf8)
      XCTAssertTrue(makefile.contains("KEEL ?= \(root)/bin/keel"), makefile)
      let make = try TestSupport.run("/usr/bin/make", ["-C", "\(scaffolds)/\(name)"], environment: env)
      XCTAssertEqual(make.status, 0, make.stdout)
      XCTAssertTrue(make.stdout.contains(root + "/include"), "built against the installed header:\n\(make.stdout)")
      let check = try TestSupport.run(keel, ["plugins", "check", "\(scaffolds)/\(name)/lib\(name).so"], environment: env)
      XCTAssertEqual(check.status, 0, check.stdout)
    }
    XCTAssertTrue(try String(contentsOfFile: scaffolds + "/inst-c/README.md", encoding: .utf8).contains(marker))
  }

  /// --bin-dir without the products: an error naming what is missing, nothing built.
  func testInstallRefusesAnIncompleteBinDir() throws {
    let work = TestSupport.tempDir("keel-install-bad")
    let r = try TestSupport.run("/bin/bash", [TestSupport.root + "/scripts/install.sh", "--bin-dir", work, work + "/prefix"])
    XCTAssertNotEqual(r.status, 0)
    XCTAssertTrue(r.stdout.contains("lacks: keel"), r.stdout)
    XCTAssertFalse(FileManager.default.fileExists(atPath: work + "/prefix/bin/keel"))
  }
}
