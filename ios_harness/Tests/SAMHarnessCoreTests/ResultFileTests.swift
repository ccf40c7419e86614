import XCTest
@testable import SAMHarnessCore

final class ResultFileTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try FileManager.default.removeItem(at: directory)
    }

    static let planJSON = """
    {"schema": "samexport.harness-plan/1", "plan_id": "p1", "device_kind": "iphone", "runs": 3, "warmup": 1,
     "points": [1], "compress": "none", "samexport_version": "0.1.0",
     "jobs": [
      {"id": "RepViTSAMEncoder|encoder|-|all", "file": "RepViTSAMEncoder.mlpackage", "model": "repvit", "title": "RepViT-SAM", "style": "sam",
       "part": "encoder", "points": null, "tokens": null, "precision": "fp16", "gmacs": 35.1, "compute_unit": "all"},
      {"id": "RepViTSAMDecoder|decoder|1|all", "file": "RepViTSAMDecoder.mlpackage", "model": "repvit", "title": "RepViT-SAM", "style": "sam",
       "part": "decoder", "points": 1, "tokens": 2, "precision": "fp16", "gmacs": 1.6, "compute_unit": "all"}
     ]}
    """

    func plan() throws -> BenchPlan {
        let url = directory.appendingPathComponent("BenchPlan.json")
        try Data(Self.planJSON.utf8).write(to: url)
        return try BenchPlan.load(from: url)
    }

    func testPlanLoadsAndRejectsOtherSchemas() throws {
        let loaded = try plan()
        XCTAssertEqual(loaded.jobs.map(\.part), ["encoder", "decoder"])
        XCTAssertEqual(loaded.jobs[1].summary, "RepViT-SAM decoder, 1 pt (2 tokens) on all")
        let other = directory.appendingPathComponent("Other.json")
        try Data(Self.planJSON.replacingOccurrences(of: "harness-plan/1", with: "harness-plan/9").utf8).write(to: other)
        XCTAssertThrowsError(try BenchPlan.load(from: other))
    }

    func testPlansOfBothSchemasNameTheJobsFamily() throws {
        let legacy = try plan()
        XCTAssertEqual(legacy.jobs.map(\.family), ["sam", "sam"])
        let current = directory.appendingPathComponent("Current.json")
        let text = Self.planJSON.replacingOccurrences(of: "harness-plan/1", with: "harness-plan/2")
            .replacingOccurrences(of: "\"style\": \"sam\"", with: "\"family\": \"efficientsam\"")
        try Data(text.utf8).write(to: current)
        let loaded = try BenchPlan.load(from: current)
        XCTAssertEqual(loaded.jobs.map(\.family), ["efficientsam", "efficientsam"])
        let encoded = try JSONSerialization.jsonObject(with: JSONEncoder().encode(loaded.jobs[0])) as? [String: Any]
        XCTAssertEqual(encoded?["family"] as? String, "efficientsam")
        XCTAssertNil(encoded?["style"])
    }

    func testResultRoundTripsInTheBenchSchema() throws {
        let plan = try plan()
        let machine = BenchResult.Machine(description: "iPhone13,2", cpu: "iPhone13,2", cores: 6, ramGiB: 4,
                                          os: "iOS 17.5", thermalState: "nominal")
        var result = BenchResult(plan: plan, machine: machine, deviceLabel: "Core ML, iPhone 12", appVersion: "1",
                                 createdUTC: "2026-01-01T00:00:00Z")
        var row = BenchRow(job: plan.jobs[0], status: .ok)
        row.samplesMs = [10, 12, 11]
        row.stats = LatencyStats(samplesMs: [10, 12, 11])
        row.peakRssMB = 512.5
        result.rows.append(row)
        XCTAssertEqual(result.pendingJobs(of: plan).map(\.id), [plan.jobs[1].id])

        let file = ResultFile(url: directory.appendingPathComponent("result.json"))
        try file.save(result)
        XCTAssertEqual(try file.load(), result)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: file.url)) as? [String: Any])
        XCTAssertEqual(object["schema"] as? String, "samexport.bench/2")
        let options = try XCTUnwrap(object["options"] as? [String: Any])
        XCTAssertEqual(options["target"] as? String, "coreml")
        let rows = try XCTUnwrap(object["rows"] as? [[String: Any]])
        XCTAssertEqual(rows[0]["compute_unit"] as? String, "all")
        XCTAssertEqual(rows[0]["status"] as? String, "ok")
        XCTAssertEqual((rows[0]["stats"] as? [String: Any])?["median_ms"] as? Double, 11)
        XCTAssertNil(rows[0]["error"], "absent values are left out, as in samexport's JSON")
    }

    func testUnfinishedBreadcrumbBecomesAnOOMRow() throws {
        let plan = try plan()
        let store = BreadcrumbStore(directory: directory)
        XCTAssertNil(store.unfinished(planID: plan.planID))
        let crumb = Breadcrumb(planID: plan.planID, jobID: plan.jobs[0].id, summary: plan.jobs[0].summary, startedUTC: "t",
                               stage: "first prediction", availableMemoryMB: 1800, footprintMB: 900)
        try store.write(crumb)
        XCTAssertEqual(store.unfinished(planID: plan.planID), crumb)
        XCTAssertNil(store.unfinished(planID: "another plan"), "a crumb of another plan is never an oom")
        let row = BreadcrumbStore.oomRow(for: crumb, job: plan.jobs[0], metricKitMemoryExits: 2)
        XCTAssertEqual(row.status, .oom)
        XCTAssertEqual(row.availableMemoryMB, 1800)
        XCTAssertTrue(row.error?.contains("first prediction") ?? false)
        XCTAssertTrue(row.error?.contains("MetricKit counts 2") ?? false)
        try store.clear()
        XCTAssertNil(store.unfinished(planID: plan.planID))
        XCTAssertFalse(store.exists)
        try store.clear()  // clearing twice is fine
    }

    func testRefreshedCrumbKeepsItsJobAndShowsTheLastFootprint() throws {
        let plan = try plan()
        let crumb = Breadcrumb(planID: plan.planID, jobID: plan.jobs[0].id, summary: plan.jobs[0].summary, startedUTC: "t",
                               stage: "load", availableMemoryMB: 1800, footprintMB: 300)
        let fresh = crumb.refreshed(footprintMB: 1350, availableMemoryMB: nil)
        XCTAssertEqual(fresh.jobID, crumb.jobID)
        XCTAssertEqual(fresh.planID, plan.planID)
        XCTAssertEqual(fresh.stage, "load")
        XCTAssertEqual(fresh.footprintMB, 1350)
        XCTAssertEqual(fresh.availableMemoryMB, 1800, "an unknown figure keeps the last known one")
        let row = BreadcrumbStore.oomRow(for: fresh, job: plan.jobs[0], metricKitMemoryExits: nil)
        XCTAssertEqual(row.peakRssMB, 1350)
        XCTAssertTrue(row.error?.contains("footprint 1350 MB at the last sample") ?? false)
    }
}
