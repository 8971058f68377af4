// swift-tools-version:6.1
// Keel — stable RL for language-model policies, with objectives, rewards and baselines as
// dlopen-ed plugins behind one C ABI (Sources/KeelABI/include/keel/keel_plugin.h).
// Every target names its `path:` explicitly: `Plugins/` is also SwiftPM's default folder
// for *package* plugins, and a subfolder without a target would be silently ignored.
import PackageDescription

// Only keel_plugin_entry is exported from a plugin (ABI rule 1): a linker version script.
let exportOnlyEntry: [LinkerSetting] = [
  .unsafeFlags(["-Xlinker", "--version-script=\(Context.packageDirectory)/Plugins/plugin.map"]),
]

let plugin = { (product: String, target: String, path: String, swift: Bool) -> (Product, Target) in
  let t: Target = swift
    ? .target(name: target, dependencies: ["KeelABI"], path: path, linkerSettings: exportOnlyEntry)
    : .target(name: target, dependencies: ["KeelABI"], path: path,
              publicHeadersPath: ".", cSettings: [.unsafeFlags(["-fvisibility=hidden", "-O2"])],
              linkerSettings: exportOnlyEntry + [.linkedLibrary("m")])
  return (.library(name: product, type: .dynamic, targets: [target]), t)
}

let builtinPlugins = [
  plugin("keel-minirl", "PluginMiniRL", "Plugins/minirl", false),
  plugin("keel-reinforce", "PluginReinforce", "Plugins/reinforce", true),
  plugin("keel-exact-match", "PluginExactMatch", "Plugins/exact-match", false),
  plugin("keel-group-mean", "PluginGroupMean", "Plugins/group-mean", true),
  plugin("keel-ppo-clip", "PluginPPOClip", "Plugins/ppo-clip", false),
  plugin("keel-grpo", "PluginGRPO", "Plugins/grpo", false),
  plugin("keel-dr-grpo", "PluginDrGRPO", "Plugins/dr-grpo", false),
  plugin("keel-dapo", "PluginDAPO", "Plugins/dapo", false),
  plugin("keel-cispo", "PluginCISPO", "Plugins/cispo", false),
  plugin("keel-gspo", "PluginGSPO", "Plugins/gspo", false),
  plugin("keel-clip-cov", "PluginClipCov", "Plugins/clip-cov", false),
  plugin("keel-kl-cov", "PluginKLCov", "Plugins/kl-cov", false),
  plugin("keel-on-policy-distill", "PluginOnPolicyDistill", "Plugins/on-policy-distill", false),
  plugin("keel-group-mean-std", "PluginGroupMeanStd", "Plugins/group-mean-std", false),
  plugin("keel-rloo", "PluginRLOO", "Plugins/rloo", false),
  plugin("keel-batch-norm", "PluginBatchNorm", "Plugins/batch-norm", false),
  plugin("keel-none", "PluginNone", "Plugins/none", false),
  plugin("keel-format", "PluginFormat", "Plugins/format", false),
  plugin("keel-length-penalty", "PluginLengthPenalty", "Plugins/length-penalty", false),
]

let package = Package(
  name: "Keel",
  platforms: [.macOS(.v14)],
  products: [
    .executable(name: "keel", targets: ["keel"]),
  ] + builtinPlugins.map { $0.0 },
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
    .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
  ],
  targets: [
    .target(name: "KeelABI", path: "Sources/KeelABI"),
    .target(name: "KeelGuard", path: "Sources/KeelGuard"),
    .systemLibrary(name: "CFFI", path: "Sources/CFFI", pkgConfig: "libffi",
                   providers: [.apt(["libffi-dev"])]),
    .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                   providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                   providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
    .target(name: "KeelDistributed", dependencies: ["CMPI"], path: "Sources/KeelDistributed"),
    // AVX2 + FMA + F16C (x86-64-v3), never AVX-512: the CPU model varies between machines.
    .target(name: "KeelKernels", path: "Sources/KeelKernels",
            cSettings: [.unsafeFlags(["-O3", "-mavx2", "-mfma", "-mf16c", "-ffp-contract=off"])],
            linkerSettings: [.linkedLibrary("m")]),
    .target(name: "KeelRandom", path: "Sources/KeelRandom"),
    .target(name: "KeelModel", dependencies: ["KeelKernels", "KeelRandom", "CBLAS"], path: "Sources/KeelModel"),
    .target(name: "KeelTasks", dependencies: ["KeelRandom"], path: "Sources/KeelTasks"),
    .target(name: "KeelTokenizer", path: "Sources/KeelTokenizer"),
    .executableTarget(name: "KernelBenchmarks",
                      dependencies: ["KeelKernels", .product(name: "Benchmark", package: "benchmark")],
                      path: "Benchmarks/KernelBenchmarks",
                      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
    .target(name: "KeelPluginHost", dependencies: ["KeelABI", "KeelGuard", "CFFI", "KeelRandom"],
            path: "Sources/KeelPluginHost"),
    .target(name: "KeelRL", dependencies: ["KeelModel", "KeelRandom", "KeelTasks", "KeelTokenizer", "KeelPluginHost", "KeelGuard", "KeelDistributed", "Yams",
                                   .product(name: "Logging", package: "swift-log"), .product(name: "Crypto", package: "swift-crypto")],
            path: "Sources/KeelRL"),
    .executableTarget(name: "keel",
                      dependencies: ["KeelPluginHost", "KeelGuard", "KeelModel", "KeelRandom", "KeelRL", "KeelTasks", "KeelTokenizer",
                                     .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                     .product(name: "Logging", package: "swift-log")],
                      path: "Sources/keel"),
    .target(name: "KeelTestSupport", dependencies: ["KeelPluginHost"], path: "Tests/KeelTestSupport"),
    .testTarget(name: "KeelPluginHostTests", dependencies: ["KeelPluginHost", "KeelABI", "KeelTestSupport"],
                path: "Tests/KeelPluginHostTests"),
    .testTarget(name: "KeelKernelsTests", dependencies: ["KeelKernels"], path: "Tests/KeelKernelsTests"),
    .testTarget(name: "KeelTasksTests", dependencies: ["KeelTasks", "KeelRandom"], path: "Tests/KeelTasksTests"),
    .testTarget(name: "KeelTokenizerTests", dependencies: ["KeelTokenizer", "KeelTestSupport"], path: "Tests/KeelTokenizerTests"),
    .testTarget(name: "KeelModelTests", dependencies: ["KeelModel", "KeelKernels", "KeelRandom"], path: "Tests/KeelModelTests"),
    .testTarget(name: "KeelRLTests", dependencies: ["KeelRL", "KeelModel", "KeelPluginHost", "KeelTestSupport"], path: "Tests/KeelRLTests"),
    .testTarget(name: "KeelCLITests", dependencies: ["KeelPluginHost", "KeelRL", "KeelModel", "KeelTasks", "KeelTokenizer", "KeelTestSupport"],
                path: "Tests/KeelCLITests"),
  ] + builtinPlugins.map { $0.1 },
  swiftLanguageModes: [.v6]
)
