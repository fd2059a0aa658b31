// swift-tools-version:6.0
import PackageDescription

// Two halves that prove each other: the forwarder (a dnsmasq-compatible DNS
// forwarder) and the test-bed (Sim), which runs it against scripted upstreams
// in network namespaces. See DESIGN.md.
let package = Package(
    name: "dnsfwd",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "forwarder", targets: ["forwarder"]),
        .executable(name: "sim", targets: ["sim"]),
        .library(name: "DNSWire", targets: ["DNSWire"]),
        .library(name: "Forwarder", targets: ["Forwarder"]),
        .library(name: "Sim", targets: ["Sim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
    ],
    targets: [
        // DNS wire codec: no I/O, shared by the forwarder and the test-bed.
        .target(name: "DNSWire"),

        // The forwarder: sans-IO core + thin epoll/recvmmsg shell.
        .target(name: "CForwarderSys"),
        // Release: no dynamic exclusivity checks (about 4 per query on the hit path;
        // the forwarder is single-threaded and its accesses are statically checked).
        .target(name: "Forwarder", dependencies: ["DNSWire", "CForwarderSys"],
                swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        .executableTarget(name: "forwarder", dependencies: ["Forwarder"],
                          swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        // Micro-benchmark of ForwarderCore with no network: ns per hit / miss (not a test).
        .executableTarget(name: "forwarder-bench", dependencies: ["Forwarder", "DNSWire"], path: "Sources/ForwarderBench",
                          swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),

        // The test-bed: namespaces/links through libnl, nftables, processes.
        .systemLibrary(name: "CNetlink", pkgConfig: "libnl-route-3.0",
                       providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]),
        .target(name: "CSimSys"),
        .target(name: "SimNet", dependencies: ["CNetlink", "CSimSys"]),
        .target(name: "Sim", dependencies: [
            "DNSWire", "SimNet", "CSimSys",
            .product(name: "Yams", package: "Yams"),
        ]),
        .executableTarget(name: "sim", dependencies: [
            "Sim", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "DNSWireTests", dependencies: ["DNSWire"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ForwarderTests", dependencies: ["Forwarder", "DNSWire"]),
        .testTarget(name: "SimNetTests", dependencies: ["SimNet"]),
        .testTarget(name: "SimTests", dependencies: ["Sim", "DNSWire"]),
        // Every scenarios/**/*.yaml as its own test case (needs the forwarder binary built).
        .testTarget(name: "ScenarioTests", dependencies: ["Sim", "forwarder"]),
    ],
    swiftLanguageModes: [.v5]
)
