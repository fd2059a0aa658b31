import ArgumentParser
import Foundation
import Sim
import SimNet

struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Replays DNS incidents: runs a DNS forwarder against scripted upstreams in network namespaces.",
        discussion: """
        A scenario file (scenarios/<family>/<name>.yaml) describes a topology of hosts, scripted
        upstream DNS servers, the forwarder under test and a timeline of steps with what must be
        seen. `sim run` builds each topology in anonymous network namespaces (they vanish when sim
        exits, however it exits), runs the steps, and prints a table and `N passed, N failed`.
        Run as root, or as a user: sim then re-executes itself in a new user namespace.
        """,
        subcommands: [Run.self, List.self, Clean.self, Bench.self])
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run scenarios and print a table of results.")

    @Argument(help: "Scenario files or folders (searched for *.yaml).")
    var paths: [String] = ["scenarios"]

    @Option(help: "The subject: ours, dnsmasq or unbound.")
    var forwarder: String = "ours"

    @Option(help: "Path of our forwarder binary (default: next to sim).")
    var forwarderPath: String?

    @Option(help: "Write a JUnit XML report here.")
    var junit: String?

    @Option(help: "Folder for artifacts (process logs, upstream queries, firewall traces, timeline); kept for failures.")
    var artifacts: String = "artifacts"

    @Flag(help: "Keep the artifacts of passing scenarios too.")
    var keepArtifacts = false

    @Flag(help: "Pin each host under /run/netns as sim-<scenario>-<host> for `ip netns exec`; `sim clean` removes them.")
    var keep = false

    @Option(help: "Only scenarios whose family/name contains this text.")
    var filter: String?

    @Flag(name: .shortAndLong, help: "Print the timeline and figures (topology build time, latencies) as it runs.")
    var verbose = false

    func validate() throws {
        guard ["ours", "dnsmasq", "unbound"].contains(forwarder) else {
            throw ValidationError("--forwarder must be ours, dnsmasq or unbound, not '\(forwarder)'")
        }
    }

    func run() throws {
        try Rootless.reexecIfNeeded(arguments: CommandLine.arguments)
        let files = try ScenarioCatalog.find(paths: paths)
        var scenarios: [Scenario] = []
        var broken: [ScenarioError] = []
        for f in files {
            do { scenarios.append(try ScenarioParser.load(path: f)) } catch let e as ScenarioError { broken.append(e) }
        }
        if let filter { scenarios = scenarios.filter { "\($0.family)/\($0.id)".contains(filter) } }
        let exe = forwarderPath ?? siblingBinary("forwarder")
        if forwarder == "ours" && !FileManager.default.isExecutableFile(atPath: exe) {
            throw ValidationError("the forwarder binary is not at \(exe); build it (swift build) or give --forwarder-path")
        }
        var options = RunOptions(forwarderPath: exe, artifactsRoot: artifacts)
        options.subject = forwarder
        options.keep = keep
        options.keepArtifacts = keepArtifacts
        options.verbose = verbose
        options.log = { print($0); fflush(stdout) }
        installInterruptHandler()
        let runner = ScenarioRunner(options: options)
        var results: [ScenarioResult] = []
        for e in broken {
            print("error: \(e)")
            results.append(ScenarioResult(family: URL(fileURLWithPath: e.file).deletingLastPathComponent().lastPathComponent,
                                          id: URL(fileURLWithPath: e.file).deletingPathExtension().lastPathComponent,
                                          name: "", file: e.file, subject: forwarder, outcome: .failed,
                                          failures: ["\(e)"], report: [], duration: 0, artifacts: nil))
        }
        for s in scenarios {
            if verbose { print("== \(s.family)/\(s.id): \(s.name)") }
            let r = runner.run(s)
            results.append(r)
            if verbose { print("   \(r.outcome.word) in \(String(format: "%.2f", r.duration))s") }
            fflush(stdout)
        }
        print(RunReport.table(results, verbose: verbose), terminator: "")
        if let junit {
            try RunReport.junit(results, subject: forwarder).write(toFile: junit, atomically: true, encoding: .utf8)
        }
        if keep {
            print("hosts are pinned; enter one with: ip netns exec sim-<scenario>-<host> bash   (remove with: sim clean)")
        }
        print(RunReport.countLine(results))
        if results.contains(where: { $0.outcome == .failed }) { throw ExitCode(1) }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List scenarios with the outcome each subject must show.")

    @Argument(help: "Scenario files or folders.")
    var paths: [String] = ["scenarios"]

    func run() throws {
        var bad = false
        for f in try ScenarioCatalog.find(paths: paths) {
            do {
                let s = try ScenarioParser.load(path: f)
                let subjects = ScenarioParser.subjectNames.compactMap { name -> String? in
                    guard let d = s.subjects[name] else { return nil }
                    switch d {
                    case .passes: return "\(name): passes"
                    case .fails(let why): return "\(name): fails (\(why))"
                    case .skip: return nil
                    }
                }
                print("\(s.family)/\(s.id)  \(s.name)")
                print("    \(subjects.joined(separator: "; "))")
            } catch {
                print("error: \(error)")
                bad = true
            }
        }
        if bad { throw ExitCode(1) }
    }
}

struct Clean: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove hosts pinned by `sim run --keep` (/run/netns/sim-*).")

    func run() throws {
        try Rootless.reexecIfNeeded(arguments: CommandLine.arguments)
        let removed = try Pinned.removeAll(prefix: "sim-")
        print(removed.isEmpty ? "nothing pinned" : "removed \(removed.count): \(removed.joined(separator: " "))")
    }
}

func siblingBinary(_ name: String) -> String {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return (URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent(name)).path
}

/// Ctrl-C or SIGTERM: exit at once. Hosts are anonymous namespaces and every
/// child has a parent-death signal, so the kernel removes all of it with us.
func installInterruptHandler() {
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal(sig) { s in
            let msg = "\nsim: interrupted, cleaning up\n"
            _ = msg.withCString { write(2, $0, strlen($0)) }
            _exit(128 + s)
        }
    }
}

SimCommand.main()
