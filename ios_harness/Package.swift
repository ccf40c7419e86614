// swift-tools-version:6.0
// SAMHarnessCore is the platform-neutral core of the harness: the plan and result files, statistics,
// runner policy (compute units, warm-up budget, footprint sampling, resuming after a kill), the SAM
// input contract, mask post-processing, everything mode, panoptic fusion and out-of-memory
// breadcrumbs. It builds and is tested on any Swift toolchain, Linux included (`swift build && swift
// test`, which `make test` runs). SAMHarnessKit is the thin Apple layer on top (Core ML runner, model
// inputs, pixel buffers, memory probes, device info, MetricKit); it re-exports the core, and its files
// compile on Apple platforms only. The apps and the device benchmark (project.yml) link SAMHarnessKit.
import PackageDescription

let package = Package(
    name: "SAMHarness",
    // Xcode 16 (Swift 6, iOS 18 / macOS 15 SDKs) is the oldest Xcode that has every symbol the Apple
    // layer names (MLModelConfiguration.functionName); the deployment targets stay iOS 16 / macOS 13,
    // the newer calls being behind #available.
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [
        .library(name: "SAMHarnessKit", targets: ["SAMHarnessKit"]),
    ],
    targets: [
        .target(name: "SAMHarnessCore"),
        // Swift 5 language mode: this layer's concurrency checking can only be run by a compiler with
        // Apple's SDKs (Core ML, Core Video, MetricKit types), which the project's machines do not have;
        // the core it builds on is checked in Swift 6 mode on every run.
        .target(name: "SAMHarnessKit", dependencies: ["SAMHarnessCore"],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        // Tests/Fixtures: golden files written by Python (tests/harness_golden.py), read by GoldenFixtureTests.
        .testTarget(name: "SAMHarnessCoreTests", dependencies: ["SAMHarnessCore"], path: "Tests",
                    sources: ["SAMHarnessCoreTests"], resources: [.copy("Fixtures")]),
    ]
)
