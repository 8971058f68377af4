// Keel.swift — the `keel` executable: commands only, no logic (that lives in the modules).
//   keel plugins list | inspect | check | include-dir
//   keel new-plugin --kind objective --lang c NAME
import ArgumentParser
@preconcurrency import Glibc
import KeelPluginHost
import KeelRL

@main
struct Keel: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "keel",
    abstract: "Stable reinforcement learning for language-model policies, with plugin objectives, rewards and baselines.",
    version: "keel \(KeelVersion.string) (plugin ABI \(KeelVersion.abi))",
    subcommands: [TrainCommand.self, SftCommand.self, EvalCommand.self, ScoreCommand.self, CompareCommand.self, ExperimentCommand.self,
                  PluginsCommand.self, NewPluginCommand.self, BenchCommand.self, TokenizeCommand.self, FuzzCommand.self])

  static func main() {
    // progress lines reach a pipe or a log file as they are printed (not at exit)
    setvbuf(stdout, nil, _IOLBF, 0)
    BLASEnvironment.ensureCoreType()
    KeelLog.bootstrap()  // every message through swift-log, at KEEL_LOG_LEVEL (default info)
    main(nil)
  }
}
