import SAMHarnessKit
import XCTest

/// The benchmark without UI, for `xcodebuild test` on a connected device or a device farm that runs
/// XCTest bundles. Hosted by SAMBench, so the plan and packages are in Bundle.main. An out-of-memory
/// kill ends the test run; running it again records that job as `oom` and continues. With a plan of
/// one job per launch each test run measures one job (BenchResult.problems knows both cases).
final class DeviceBenchmarkTests: XCTestCase {
    func testRunsThePlanAndWritesTheResult() async throws {
        let locations = try BenchmarkRunner.Locations.app(bundle: .main)
        let plan = try BenchPlan.load(from: locations.plan)
        let runner = BenchmarkRunner(locations: locations)
        let result = try await runner.run { print("samexport-bench: \($0)") }

        XCTAssertEqual(result.problems(against: plan), [])
        let attachment = XCTAttachment(contentsOfFile: runner.resultFile.url)
        attachment.name = BenchmarkRunner.resultFileName
        attachment.lifetime = .keepAlways
        add(attachment)
    }
}
