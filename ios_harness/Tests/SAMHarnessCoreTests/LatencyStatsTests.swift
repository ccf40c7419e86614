import XCTest
@testable import SAMHarnessCore

/// Expected values are samexport.bench.stats.summarize (NumPy) on the same samples.
final class LatencyStatsTests: XCTestCase {
    func testMatchesNumPy() throws {
        let stats = try XCTUnwrap(LatencyStats(samplesMs: [5, 1, 4, 2, 3, 10]))
        XCTAssertEqual(stats.n, 6)
        XCTAssertEqual(stats.medianMs, 3.5, accuracy: 1e-12)
        XCTAssertEqual(stats.p90Ms, 7.5, accuracy: 1e-12)
        XCTAssertEqual(stats.minMs, 1)
        XCTAssertEqual(stats.maxMs, 10)
        XCTAssertEqual(stats.meanMs, 4.166666666666667, accuracy: 1e-12)
        XCTAssertEqual(stats.stdMs, 2.91070819942883, accuracy: 1e-12)
    }

    func testEvenCountAndSingleSample() throws {
        let four = try XCTUnwrap(LatencyStats(samplesMs: [3, 1, 2, 4]))
        XCTAssertEqual(four.medianMs, 2.5, accuracy: 1e-12)
        XCTAssertEqual(four.p90Ms, 3.7, accuracy: 1e-12)
        XCTAssertEqual(four.stdMs, 1.118033988749895, accuracy: 1e-12)
        let one = try XCTUnwrap(LatencyStats(samplesMs: [7.25]))
        XCTAssertEqual(one.p90Ms, 7.25)
        XCTAssertEqual(one.stdMs, 0)
    }

    func testNoSamplesIsNil() {
        XCTAssertNil(LatencyStats(samplesMs: []))
    }

    func testEncodesTheBenchKeys() throws {
        let stats = try XCTUnwrap(LatencyStats(samplesMs: [1, 2]))
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(stats)) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["n", "median_ms", "p90_ms", "min_ms", "max_ms", "mean_ms", "std_ms"])
    }
}
