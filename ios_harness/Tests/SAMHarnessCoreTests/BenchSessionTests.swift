import Foundation
import XCTest
@testable import SAMHarnessCore

/// Resuming a run after a kill, ending a launch, and judging a result against its plan: the logic the
/// Core ML runner and the device XCTest use, tested here on any platform.
final class BenchSessionTests: XCTestCase {
    static func plan(oneJobPerLaunch: Bool = false, decoderRuns: Int? = 20) throws -> BenchPlan {
        var json = ResultFileTests.planJSON
        if let decoderRuns {
            json = json.replacingOccurrences(of: #""tokens": 2,"#, with: #""tokens": 2, "runs": \#(decoderRuns),"#)
        }
        json = json.replacingOccurrences(of: #""samexport_version": "0.1.0","#,
                                         with: #""samexport_version": "0.1.0", "one_job_per_launch": \#(oneJobPerLaunch),"#)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString + ".json")
        try Data(json.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        return try BenchPlan.load(from: url)
    }

    static func fresh(_ plan: BenchPlan, created: String = "2026-11-30T10:00:00Z") -> BenchResult {
        BenchResult(plan: plan, machine: BenchResult.Machine(description: "d", cpu: "c", cores: 6, ramGiB: 4, os: "iOS 18",
                                                             thermalState: "nominal"),
                    deviceLabel: "Core ML, iPhone 12", appVersion: "1", createdUTC: created)
    }

    static func okRow(_ job: BenchJob, samples: Int) -> BenchRow {
        var row = BenchRow(job: job, status: .ok)
        row.samplesMs = Array(repeating: 4.0, count: samples)
        row.stats = LatencyStats(samplesMs: row.samplesMs!)
        return row
    }

    func testAKilledLaunchBecomesAnOOMRowOnce() throws {
        let plan = try Self.plan()
        let crumb = Breadcrumb(planID: plan.planID, jobID: plan.jobs[1].id, summary: plan.jobs[1].summary,
                               startedUTC: "t", stage: "load", availableMemoryMB: 900, footprintMB: 1400)
        var previous = Self.fresh(plan)
        previous.harness.launches = 1
        previous.rows = [Self.okRow(plan.jobs[0], samples: 3)]
        var asked: [Date] = []
        let (result, killed) = BenchResult.resuming(previous, plan: plan, crumb: crumb,
                                                    memoryExits: { asked.append($0); return 1 },
                                                    fresh: { XCTFail("the plan's result goes on"); return Self.fresh(plan) })
        XCTAssertEqual(killed?.id, plan.jobs[1].id)
        XCTAssertEqual(result.harness.launches, 2)
        XCTAssertEqual(result.harness.metricKitMemoryExits, 1)
        XCTAssertEqual(asked, [ISO8601DateFormatter().date(from: "2026-11-30T10:00:00Z")!],
                       "MetricKit is asked for the exits since this run began")
        XCTAssertEqual(result.rows.map(\.status), [.ok, .oom])
        XCTAssertTrue(result.rows[1].error?.hasPrefix("ended during load") ?? false, result.rows[1].error ?? "")

        let again = BenchResult.resuming(result, plan: plan, crumb: crumb, memoryExits: { _ in nil },
                                         fresh: { Self.fresh(plan) })
        XCTAssertNil(again.killed, "a job with a row is not killed twice")
        XCTAssertEqual(again.result.rows.count, 2)
    }

    func testAResultOfAnotherPlanStartsAfresh() throws {
        let plan = try Self.plan()
        var other = Self.fresh(plan)
        other.harness.planID = "another plan"
        other.rows = [Self.okRow(plan.jobs[0], samples: 3)]
        let foreign = Breadcrumb(planID: "another plan", jobID: plan.jobs[0].id, summary: "s", startedUTC: "t",
                                 stage: "load", availableMemoryMB: nil, footprintMB: nil)
        let (result, killed) = BenchResult.resuming(other, plan: plan, crumb: foreign, memoryExits: { _ in nil },
                                                    fresh: { Self.fresh(plan) })
        XCTAssertNil(killed)
        XCTAssertEqual(result.harness.planID, plan.planID)
        XCTAssertEqual(result.rows, [])
        XCTAssertEqual(result.harness.launches, 1)
    }

    /// Review item: the device XCTest expected the plan's run count (the encoders' 5) for every row;
    /// decoders run 20.
    func testEachRowIsJudgedByItsJobsRunCount() throws {
        let plan = try Self.plan()
        XCTAssertEqual(plan.jobs.map(\.runs), [nil, 20])
        var result = Self.fresh(plan)
        result.rows = [Self.okRow(plan.jobs[0], samples: 3), Self.okRow(plan.jobs[1], samples: 20)]
        result.harness.finished = true
        XCTAssertEqual(result.problems(against: plan), [])

        result.rows[1] = Self.okRow(plan.jobs[1], samples: 3)
        XCTAssertEqual(result.problems(against: plan), ["\(plan.jobs[1].id): 3 timed runs, the plan asks 20"])
        result.rows[1] = BenchRow(job: plan.jobs[1], status: .oom)
        XCTAssertEqual(result.problems(against: plan), [], "an oom row has no samples to count")
        result.rows.removeLast()
        result.harness.finished = false
        XCTAssertEqual(result.problems(against: plan),
                       ["no row for \(plan.jobs[1].id)", "the result is not marked finished"])
    }

    /// Review item: under --one-job-per-launch every launch measures one job and the result is
    /// unfinished until the last one.
    func testOneJobPerLaunchEndsEachLaunchAfterAJob() throws {
        let plan = try Self.plan(oneJobPerLaunch: true)
        var result = Self.fresh(plan)
        XCTAssertEqual(result.problems(against: plan), ["no job was measured"])
        result.rows = [Self.okRow(plan.jobs[0], samples: 3)]
        XCTAssertTrue(result.endsLaunch(of: plan))
        XCTAssertEqual(result.problems(against: plan), [])
        result.rows.append(Self.okRow(plan.jobs[1], samples: 20))
        XCTAssertFalse(result.endsLaunch(of: plan), "the last job: the launch finishes the run")
        XCTAssertEqual(result.problems(against: plan), ["finished is false with 0 jobs pending"])
        result.harness.finished = true
        XCTAssertEqual(result.problems(against: plan), [])
        XCTAssertFalse(Self.fresh(try Self.plan()).endsLaunch(of: try Self.plan()))
    }

    func testAPlanRefusesAJobWithoutRuns() throws {
        XCTAssertThrowsError(try Self.plan(decoderRuns: 0)) { error in
            XCTAssertTrue(error.localizedDescription.contains("needs runs >= 1"), error.localizedDescription)
        }
    }

    /// Review item: placement read only `main`; a multifunction decoder's job names its function.
    func testPlacementSummarizesTheJobsFunction() {
        XCTAssertEqual(Placement.function(named: "points_5", in: ["points_2", "points_5"]), "points_5")
        XCTAssertNil(Placement.function(named: "points_9", in: ["points_2", "points_5"]))
        XCTAssertEqual(Placement.function(named: nil, in: ["main"]), "main")
        XCTAssertEqual(Placement.function(named: nil, in: ["points_2"]), "points_2")
        XCTAssertNil(Placement.function(named: nil, in: ["points_2", "points_5"]))
    }
}

final class MetricKitLedgerTests: XCTestCase {
    func testOnlyPeriodsEndingAfterTheRunStartCount() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let ledger = MetricKitLedger(directory: directory)
        let day: TimeInterval = 86_400
        let start = Date(timeIntervalSince1970: 10 * day + 3_600)
        XCTAssertNil(ledger.memoryExits(since: start))
        try ledger.record([
            .init(begin: Date(timeIntervalSince1970: 8 * day), end: Date(timeIntervalSince1970: 9 * day), memoryExits: 4),
        ])
        XCTAssertNil(ledger.memoryExits(since: start), "exits of the day before the run are not the run's")
        try ledger.record([
            .init(begin: Date(timeIntervalSince1970: 10 * day), end: Date(timeIntervalSince1970: 11 * day), memoryExits: 1),
            .init(begin: Date(timeIntervalSince1970: 10 * day), end: Date(timeIntervalSince1970: 11 * day), memoryExits: 2),
        ])
        XCTAssertEqual(ledger.memoryExits(since: start), 2, "a period seen twice counts once, with its last count")
        XCTAssertEqual(ledger.periods().count, 2)
        try Data("{not json".utf8).write(to: ledger.url)
        XCTAssertNil(ledger.memoryExits(since: start), "an unreadable ledger counts as none")
    }
}
