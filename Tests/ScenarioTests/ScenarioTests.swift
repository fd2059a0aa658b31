import Foundation
import Sim
import Testing

/// Every scenario file under scenarios/ is one test case, run by the same
/// runner as `sim run`, against the subject named by $SIM_SUBJECT (default: ours).
private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

private let scenarioFiles: [String] = {
    let root = repoRoot.appendingPathComponent("scenarios").path
    let files = (try? ScenarioCatalog.find(paths: [root])) ?? []
    return files.map { String($0.dropFirst(root.count + 1)) }
}()

private var productsDir: URL {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: exe).deletingLastPathComponent()
}

@Suite("scenarios", .serialized, .enabled(if: getuid() == 0, "scenarios need root here (sim re-executes itself rootless; swift test cannot)"))
struct ScenarioTests {
    @Test("scenario file", arguments: scenarioFiles)
    func scenario(_ file: String) throws {
        let path = repoRoot.appendingPathComponent("scenarios").appendingPathComponent(file).path
        let scenario = try ScenarioParser.load(path: path)
        var options = RunOptions(forwarderPath: productsDir.appendingPathComponent("forwarder").path,
                                 artifactsRoot: repoRoot.appendingPathComponent(".build/scenario-artifacts").path)
        options.subject = ProcessInfo.processInfo.environment["SIM_SUBJECT"] ?? "ours"
        let result = ScenarioRunner(options: options).run(scenario)
        #expect(result.outcome != .failed,
                "\(file) [\(options.subject)]: \(result.failures.joined(separator: "\n"))\nartifacts: \(result.artifacts ?? "-")")
    }

    @Test("the scenario folder is not empty")
    func found() {
        #expect(scenarioFiles.count >= 6)
    }
}
