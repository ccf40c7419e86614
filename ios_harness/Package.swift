// swift-tools-version:5.9
// The testable core of the harness: statistics, the result file, the SAM input contract, mask
// post-processing and out-of-memory breadcrumbs. `swift test` runs its unit tests on any Mac; the
// apps and the device benchmark (project.yml) link it.
import PackageDescription

let package = Package(
    name: "SAMHarness",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [
        .library(name: "SAMHarnessKit", targets: ["SAMHarnessKit"]),
    ],
    targets: [
        .target(name: "SAMHarnessKit"),
        .testTarget(name: "SAMHarnessKitTests", dependencies: ["SAMHarnessKit"]),
    ]
)
