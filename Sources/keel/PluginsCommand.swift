// PluginsCommand.swift — `keel plugins list | inspect | check | include-dir`.
import ArgumentParser
import Foundation
import KeelGuard
import KeelPluginHost

struct PluginsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plugins",
    abstract: "List, inspect and validate objective, reward and baseline plugins.",
    subcommands: [List.self, Inspect.self, Check.self, Eval.self, Bench.self, IncludeDir.self])
}

/// `--set name=value` plugin parameters, shared by the commands that create instances.
struct ParameterOptions: ParsableArguments {
  @Option(name: .customLong("set"), help: "Set a plugin parameter: --set eps_high=0.3 (repeatable).")
  var settings: [String] = []

  func parse(for library: PluginLibrary) throws -> [String: ParameterValue] {
    var text: [String: String] = [:]
    for s in settings {
      guard let eq = s.firstIndex(of: "=") else {
        throw ValidationError("--set expects name=value, got '\(s)'")
      }
      text[String(s[..<eq])] = String(s[s.index(after: eq)...])
    }
    return try library.parseParameters(text)
  }
}

func describeParameters(_ lib: PluginLibrary, indent: String) -> [String] {
  lib.parameters.map { p in
    var range = ""
    if p.type == .float || p.type == .int, p.minValue > -.infinity || p.maxValue < .infinity {
      range = " [\(p.minValue), \(p.maxValue)]"
    }
    if let choices = p.choices { range = " {\(choices.joined(separator: " | "))}" }
    return "\(indent)\(p.name): \(p.type) = \(p.defaultValue)\(range) — \(p.doc)"
  }
}

extension PluginsCommand {
  struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "List the plugins found in KEEL_PLUGIN_PATH and the built-in directory, with their parameters.")

    func run() throws {
      let discovery = PluginDiscovery.standard()
      let listing = discovery.list()
      print("NAME               KIND       VERSION  ABI  PATH")
      for lib in listing.plugins.sorted(by: { ($0.kind.rawValue, $0.name) < ($1.kind.rawValue, $1.name) }) {
        let cols = [lib.name.padding(toLength: 18, withPad: " ", startingAt: 0),
                    lib.kind.description.padding(toLength: 10, withPad: " ", startingAt: 0),
                    lib.version.padding(toLength: 8, withPad: " ", startingAt: 0),
                    "\(lib.abiMajor).\(lib.abiMinor)".padding(toLength: 4, withPad: " ", startingAt: 0),
                    lib.path]
        print(cols.joined(separator: " "))
        for line in describeParameters(lib, indent: "    ") { print(line) }
      }
      for f in listing.failures {
        print("BROKEN \(f.path): \(f.error)")
      }
    }
  }

  struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show everything a plugin declares.")
    @Argument(help: "A plugin name (minirl) or a path (./libmine.so).") var plugin: String

    func run() throws {
      let lib = try PluginDiscovery.standard().resolve(plugin)
      print("name:        \(lib.name)")
      print("kind:        \(lib.kind)")
      print("version:     \(lib.version)")
      print("abi:         \(lib.abiMajor).\(lib.abiMinor) (host \(KeelVersion.abi))")
      print("path:        \(lib.path)")
      print("description: \(lib.description)")
      if lib.kind == .objective {
        print("aggregation: \(lib.aggregation)")
        // what an instance with the default parameters asks for (ABI 1.1 flags; parameters may change it)
        let needs = (try? ObjectiveInstance(library: lib))?.needed.map { "\($0)" } ?? []
        print("needs:       \(needs.isEmpty ? "nothing beyond 1.0's inputs" : needs.joined(separator: ", ")) (default parameters)")
      }
      print("state:       \(lib.hasState ? "saves state in checkpoints" : "stateless")")
      print("parameters:\(lib.parameters.isEmpty ? " none" : "")")
      for line in describeParameters(lib, indent: "  ") { print(line) }
      if !lib.scalars.isEmpty {
        print(lib.kind == .objective ? "metrics:" : "components:")
        for s in lib.scalars { print("  \(s.name) (\(s.reduction)) — \(s.doc)") }
      }
    }
  }

  struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Validate a plugin on edge cases, in a child process (a crashing plugin is reported, keel survives).",
      discussion: """
        Rules: finite inputs give finite outputs; an empty or all-masked batch gives loss 0 and \
        gradient 0; a NaN input gives an error status or a NaN output, never a crash; ∂loss/∂logp \
        (and every ABI 1.1 term gradient the instance returns: entropy, KLs, logits) matches central \
        finite differences in its input with logp_frozen held fixed \
        (max|fd − g| ≤ 1e-3·max(max|g|, 1e-3) + 1e-5); a batch split into two calls sums to the whole. \
        Exit status 0 only if every check passes.
        """)
    @Argument(help: "A plugin name (minirl) or a path (./libmine.so).") var plugin: String
    @OptionGroup var parameters: ParameterOptions
    @Flag(help: .hidden) var inProcess = false

    func run() throws {
      if inProcess {
        keel_guard_die_with_parent()  // a killed `plugins check` leaves no child spinning
        // the parent may have died before the line above ran: then this process was reparented
        if let parent = ProcessInfo.processInfo.environment["KEEL_CHECK_PARENT"].flatMap(Int32.init), parent != getppid() {
          throw ExitCode(1)
        }
        return try runChild()
      }
      // Load in this process first, so that load errors (ABI, missing symbol…) are reported plainly.
      let lib = try PluginDiscovery.standard().resolve(plugin)
      _ = try parameters.parse(for: lib)
      let child = Process()
      child.executableURL = URL(fileURLWithPath: KeelPaths.executable)
      child.arguments = ["plugins", "check", lib.path, "--in-process"] + parameters.settings.flatMap { ["--set", $0] }
      // The crash is ours to report: no Swift backtrace from the child.
      child.environment = ProcessInfo.processInfo.environment.merging(["SWIFT_BACKTRACE": "enable=no",
                                                                       "KEEL_CHECK_PARENT": String(getpid())]) { $1 }
      let pipe = Pipe()
      child.standardOutput = pipe
      child.standardError = pipe
      try child.run()
      let data = pipe.fileHandleForReading.readDataToEndOfFile()
      child.waitUntilExit()
      let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
      var passed = 0, failed = 0, running: String? = nil
      for line in lines {
        if line.hasPrefix("RUN ") { running = String(line.dropFirst(4)); continue }
        if line.hasPrefix("PASS ") { passed += 1; running = nil }
        if line.hasPrefix("FAIL ") { failed += 1; running = nil }
        print(line)
      }
      if child.terminationReason == .uncaughtSignal {
        let sig = child.terminationStatus
        print("CRASH \(running ?? "?"): plugin '\(lib.name)' (\(lib.path)) crashed with signal \(sig) (\(signalName(sig))); keel survived")
        failed += 1
      } else if child.terminationStatus != 0 && failed == 0 {
        print("FAIL checker: the check process exited with status \(child.terminationStatus)")
        failed += 1
      }
      print("\(lib.name): \(passed) of \(passed + failed) checks passed")
      if failed > 0 { throw ExitCode(1) }
    }

    private func runChild() throws {
      let lib = try PluginLibrary.load(path: plugin)
      var checker = PluginChecker(library: lib, settings: try parameters.parse(for: lib))
      checker.willRun = { name in print("RUN \(name)"); fflush(nil) }
      checker.didRun = { r in print("\(r.passed ? "PASS" : "FAIL") \(r.name): \(r.detail)"); fflush(nil) }
      let results = checker.run()
      if results.contains(where: { !$0.passed }) { throw ExitCode(1) }
    }
  }

  struct IncludeDir: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "include-dir", abstract: "Print the directory that holds keel/keel_plugin.h (for -I).")
    func run() throws {
      guard let dir = KeelPaths.includeDirectory() else {
        let installed = (KeelPaths.installPrefix ?? "PREFIX") + "/include"
        throw ValidationError("cannot find keel/keel_plugin.h in \(installed) (scripts/install.sh) or the source tree: set KEEL_HOME to a Keel source directory or install prefix")
      }
      print(dir)
    }
  }
}

func signalName(_ sig: Int32) -> String {
  switch sig {
  case SIGSEGV: return "SIGSEGV"
  case SIGABRT: return "SIGABRT"
  case SIGILL: return "SIGILL"
  case SIGBUS: return "SIGBUS"
  case SIGFPE: return "SIGFPE"
  case SIGTRAP: return "SIGTRAP"
  case SIGKILL: return "SIGKILL"
  default: return "signal \(sig)"
  }
}
