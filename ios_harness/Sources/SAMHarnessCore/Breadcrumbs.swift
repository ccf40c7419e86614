import Foundation

/// Out-of-memory detection across launches. iOS ends an app over its memory limit with a jetsam
/// kill (SIGKILL): nothing in the process runs, so the harness writes a breadcrumb before each
/// model run and removes it after. A breadcrumb found at the next launch names the run that was
/// killed; it becomes an `oom` row and the benchmark continues with the next job.
public struct Breadcrumb: Codable, Equatable, Sendable {
    /// The plan the job belongs to: job ids repeat across plans, and reinstalling keeps Documents, so a
    /// crumb of another plan (or of a version that wrote none) is ignored, never read as an `oom`.
    public let planID: String?
    public let jobID: String
    public let summary: String
    public let startedUTC: String
    public let stage: String
    public let availableMemoryMB: Double?
    public let footprintMB: Double?

    enum CodingKeys: String, CodingKey {
        case summary, stage
        case planID = "plan_id"
        case jobID = "job_id"
        case startedUTC = "started_utc"
        case availableMemoryMB = "available_memory_mb"
        case footprintMB = "footprint_mb"
    }

    public init(planID: String?, jobID: String, summary: String, startedUTC: String, stage: String,
                availableMemoryMB: Double?, footprintMB: Double?) {
        self.planID = planID
        self.jobID = jobID
        self.summary = summary
        self.startedUTC = startedUTC
        self.stage = stage
        self.availableMemoryMB = availableMemoryMB
        self.footprintMB = footprintMB
    }

    /// The same crumb with the memory figures of now (rewritten about every 250 ms while a part runs).
    public func refreshed(footprintMB: Double?, availableMemoryMB: Double?) -> Breadcrumb {
        Breadcrumb(planID: planID, jobID: jobID, summary: summary, startedUTC: startedUTC, stage: stage,
                   availableMemoryMB: availableMemoryMB ?? self.availableMemoryMB, footprintMB: footprintMB ?? self.footprintMB)
    }
}

public struct BreadcrumbStore {
    public let url: URL

    public init(directory: URL) {
        url = directory.appendingPathComponent("samexport-breadcrumb.json")
    }

    /// "About to run `job` (stage: load, first prediction, timed runs) with this much memory".
    /// Written atomically; the kernel keeps the file even when the process is killed right after.
    public func write(_ crumb: Breadcrumb) throws {
        try JSONEncoder().encode(crumb).write(to: url, options: .atomic)
    }

    public func clear() throws {
        if FileManager.default.fileExists(atPath: url.path) {
            try FileManager.default.removeItem(at: url)
        }
    }

    /// The breadcrumb a killed launch of `planID` left behind, if any (an unreadable one, or one of
    /// another plan, counts as none).
    public func unfinished(planID: String) -> Breadcrumb? {
        guard let data = try? Data(contentsOf: url),
              let crumb = try? JSONDecoder().decode(Breadcrumb.self, from: data),
              crumb.planID == planID else { return nil }
        return crumb
    }

    /// Whether any breadcrumb file is there (of this plan or not), so a foreign one can be cleared.
    public var exists: Bool { FileManager.default.fileExists(atPath: url.path) }

    /// The row an unfinished breadcrumb stands for: the launch ended while `stage` ran. It is an `oom` row,
    /// the likeliest cause; the verdict's evidence is added by samexport (JetsamEvent report or none).
    public static func oomRow(for crumb: Breadcrumb, job: BenchJob, metricKitMemoryExits: Int?) -> BenchRow {
        var row = BenchRow(job: job, status: .oom)
        let available = crumb.availableMemoryMB.map { String(format: ", %.0f MB available before it", $0) } ?? ""
        let confirmed = metricKitMemoryExits.map { "; MetricKit counts \($0) memory-limit exits for this app" } ?? ""
        let footprint = crumb.footprintMB.map { String(format: ", footprint %.0f MB at the last sample", $0) } ?? ""
        // The crumb says only that the launch ended inside this job: an out-of-memory kill is the usual
        // cause, but a crash or a force-quit leaves the same crumb. samexport bench names the evidence
        // (a JetsamEvent report of the kill, or "breadcrumb only").
        row.error = "ended during \(crumb.stage) (the launch stopped before the job finished)"
            + "\(footprint)\(available)\(confirmed)"
        row.availableMemoryMB = crumb.availableMemoryMB
        row.peakRssMB = crumb.footprintMB
        return row
    }
}
