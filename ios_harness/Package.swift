// swift-tools-version:5.9
// The testable core of the harness: statistics, the result file, the SAM input contract, mask
// post-processing and out-of-memory breadcrumbs. `swift build && swift test` run on any Swift
// toolchain, Linux included: the files that need Core ML, Core Video or Darwin (the runner, model
// inputs, the image canvas, memory probes, device info) compile on Apple platforms only. The apps and
// the device benchmark (project.yml) link it.
import PackageDescription

let package = Package(
    name: "SAMHarness",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [
        .library(name: "SAMHarnessKit", targets: ["SAMHarnessKit"]),
    ],
    targets: [
        .target(name: "SAMHarnessKit"),
        // Tests/Fixtures: golden files written by Python (tests/harness_golden.py), read by GoldenFixtureTests.
        .testTarget(name: "SAMHarnessKitTests", dependencies: ["SAMHarnessKit"], path: "Tests",
                    sources: ["SAMHarnessKitTests"], resources: [.copy("Fixtures")]),
    ]
)
