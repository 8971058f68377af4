// NewPluginCommand.swift — `keel new-plugin --kind K --lang L NAME [--dir DIR]`: copy
// templates/L/K/ into DIR (default ./NAME), renaming the template's placeholder names
// (keel-template-K, keel_template_K) to NAME, and pointing its Makefile at this keel.
import ArgumentParser
import Foundation
import KeelPluginHost

struct NewPluginCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "new-plugin", abstract: "Scaffold a plugin from templates/ (then: make && keel plugins check ./lib<NAME>.so).")

  @Option(help: "objective | reward | baseline") var kind: String
  @Option(help: "c (objective, reward, baseline) | swift (objective) | rust (objective; needs cargo)") var lang: String = "c"
  @Option(help: "Directory to create (default: ./NAME).") var dir: String?
  @Argument(help: "The plugin's name: lowercase letters, digits and '-'.") var name: String

  func validate() throws {
    guard PluginKind(name: kind) != nil else {
      throw ValidationError("unknown --kind '\(kind)'; valid: objective, reward, baseline")
    }
    guard !name.isEmpty, name.allSatisfy({ ($0.isLetter && $0.isLowercase) || $0.isNumber || $0 == "-" }),
          name.first!.isLetter else {
      throw ValidationError("plugin name '\(name)' must start with a letter and use only a-z, 0-9 and '-'")
    }
  }

  func run() throws {
    guard let templates = KeelPaths.templatesDirectory() else {
      let installed = (KeelPaths.installPrefix ?? "PREFIX") + "/share/keel/templates"
      throw ValidationError("cannot find the templates in \(installed) (scripts/install.sh) or the source tree: set KEEL_HOME to a Keel source directory or install prefix")
    }
    let fm = FileManager.default
    let source = "\(templates)/\(lang)/\(kind)"
    guard fm.fileExists(atPath: source) else {
      let available = ((try? fm.contentsOfDirectory(atPath: templates)) ?? []).sorted().flatMap { l in
        ((try? fm.contentsOfDirectory(atPath: "\(templates)/\(l)")) ?? []).sorted().map { "--lang \(l) --kind \($0)" }
      }
      throw ValidationError("no template for --lang \(lang) --kind \(kind). Available: \(available.joined(separator: "; "))")
    }
    let target = dir ?? name
    guard !fm.fileExists(atPath: target) else {
      throw ValidationError("'\(target)' already exists; choose another --dir (nothing was written)")
    }
    try fm.createDirectory(atPath: target, withIntermediateDirectories: true)
    let hyphen = "keel-template-\(kind)", underscore = "keel_template_\(kind)"
    let ident = name.replacingOccurrences(of: "-", with: "_")
    var written: [String] = []
    for file in try fm.contentsOfDirectory(atPath: source).sorted() {
      var text = try String(contentsOfFile: "\(source)/\(file)", encoding: .utf8)
      text = text.replacingOccurrences(of: hyphen, with: name).replacingOccurrences(of: underscore, with: ident)
      if file == "Makefile" {
        text = text.replacingOccurrences(of: "KEEL ?= keel", with: "KEEL ?= \(KeelPaths.executable)")
      }
      let outName = file.replacingOccurrences(of: hyphen, with: name)
      try text.write(toFile: "\(target)/\(outName)", atomically: true, encoding: .utf8)
      written.append("\(target)/\(outName)")
    }
    print("created \(kind) plugin '\(name)' (\(lang)) in \(target):")
    for w in written { print("  \(w)") }
    print("next: make -C \(target) && keel plugins check \(target)/lib\(name).so")
  }
}
