import Dispatch
import Foundation
import XCTest
@testable import SAMHarnessCore

/// A footprint that tests set, read by the sampler from its queue.
final class FakeFootprint: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: UInt64 = 100
    private var reported: [UInt64] = []

    var value: UInt64 {
        get { lock.lock(); defer { lock.unlock() }; return bytes }
        set { lock.lock(); bytes = newValue; lock.unlock() }
    }

    func report(_ footprint: UInt64) {
        lock.lock()
        reported.append(footprint)
        lock.unlock()
    }

    var refreshes: [UInt64] {
        lock.lock()
        defer { lock.unlock() }
        return reported
    }
}

final class RunnerPolicyTests: XCTestCase {
    func testComputeUnitsAreThePlansNames() throws {
        XCTAssertEqual(try ComputeUnit(planName: "cpu_and_ne"), .cpuAndNeuralEngine)
        XCTAssertEqual(ComputeUnit.allCases.map(\.rawValue), ["all", "cpu_and_ne", "cpu_and_gpu", "cpu_only"])
        XCTAssertThrowsError(try ComputeUnit(planName: "ane")) { error in
            XCTAssertEqual(error.localizedDescription,
                           "unknown compute unit ane; use all, cpu_and_ne, cpu_and_gpu or cpu_only")
        }
    }

    func testWarmupTakesTheLongerOfRunsAndSeconds() {
        let budget = WarmupBudget(planWarmup: 3)
        XCTAssertEqual(budget.minimumRuns, WarmupBudget.minimumRunsFloor, "a plan's smaller warm-up is raised")
        XCTAssertTrue(budget.wantsMore(runs: 9, elapsedMs: 5_000), "too few runs")
        XCTAssertTrue(budget.wantsMore(runs: 50, elapsedMs: 999), "too short")
        XCTAssertFalse(budget.wantsMore(runs: 10, elapsedMs: 1_000))
        XCTAssertEqual(WarmupBudget(planWarmup: 25).minimumRuns, 25)
    }

    /// The breadcrumb's footprint refresh fires while a part runs, about every refresh interval, and
    /// hands over the footprint of now (review item: the first refresh time was DISPATCH_TIME_NOW, so
    /// `now >= last + interval` never held and the crumb kept the footprint of the stage start).
    func testTheSamplerRefreshesWithTheLatestFootprint() throws {
        let footprint = FakeFootprint()
        let sampler = FootprintSampler(refreshInterval: .milliseconds(20), read: { footprint.value },
                                       onRefresh: { footprint.report($0) })
        let began = Date()
        sampler.start(interval: .milliseconds(1))
        XCTAssertTrue(Self.waitFor { footprint.refreshes.count >= 2 }, "the refresh never fired twice")
        footprint.value = 700
        XCTAssertTrue(Self.waitFor { footprint.refreshes.last == 700 }, "no refresh with the new footprint")
        let peak = sampler.stop()
        let refreshes = footprint.refreshes
        let elapsedMs = Date().timeIntervalSince(began) * 1000
        XCTAssertEqual(refreshes.first, 100)
        XCTAssertLessThanOrEqual(Double(refreshes.count), elapsedMs / 20 + 2,
                                 "refreshes are rate-limited to one per interval: \(refreshes.count) in \(elapsedMs) ms")
        XCTAssertEqual(peak, 700)
    }

    /// Polls `condition` for up to `seconds` (a loaded machine may run the timer late, never not at all).
    static func waitFor(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return condition()
    }

    func testAPausedSamplerReadsOnlyWhenAsked() throws {
        let footprint = FakeFootprint()
        let sampler = FootprintSampler(read: { footprint.value })
        sampler.start(interval: .milliseconds(1))
        XCTAssertEqual(sampler.stagePeak(), 100)
        sampler.pause()
        footprint.value = 900
        Thread.sleep(forTimeInterval: 0.05)
        footprint.value = 200
        sampler.sample()
        XCTAssertEqual(sampler.stagePeak(), 200, "the 900 came and went while paused: not seen")
        footprint.value = 300
        sampler.sample()
        XCTAssertEqual(sampler.stop(), 300)
    }

    func testCStringsDecodeUpToTheirTerminator() {
        XCTAssertEqual(decodeCString([77, 97, 99, 49, 52, 44, 50, 0, 120, 120]), "Mac14,2")
        XCTAssertEqual(decodeCString([65, 112, 112, 108, 101]), "Apple", "no terminator: the whole buffer")
        XCTAssertEqual(decodeCString([0]), "")
        XCTAssertEqual(decodeCString([-61, -87, 0]), "é", "bytes above 127 are UTF-8")
    }

    /// Values of Python's colorsys.hsv_to_rgb((n * 0.618034) % 1, 0.85, 0.95), truncated to 8 bits.
    func testOverlayColorsAreTheGoldenRatioHues() {
        let expected: [(UInt8, UInt8, UInt8)] = [(242, 36, 36), (36, 96, 242), (156, 242, 36), (242, 36, 216),
                                                 (36, 242, 207), (242, 147, 36)]
        for (number, colour) in expected.enumerated() {
            let got = OverlayPalette.color(number)
            XCTAssertTrue(got == colour, "mask \(number): \(got) != \(colour)")
        }
    }
}
