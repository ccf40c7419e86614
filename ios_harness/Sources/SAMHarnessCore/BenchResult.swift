import Foundation

/// The result file, in the schema of `samexport bench --format json` ("samexport.bench/2"), so
/// `samexport bench --from RESULT.json` renders it like any other device.
public struct BenchResult: Codable, Equatable, Sendable {
    public static let schema = "samexport.bench/2"

    public var schema: String = BenchResult.schema
    public var createdUTC: String
    public var machine: Machine
    public var versions: [String: String]
    public var device: Device
    public var options: Options
    public var rows: [BenchRow]
    /// Harness bookkeeping: which plan, whether every job has a row.
    public var harness: HarnessInfo

    enum CodingKeys: String, CodingKey {
        case schema, machine, versions, device, options, rows, harness
        case createdUTC = "created_utc"
    }

    public struct Machine: Codable, Equatable, Sendable {
        public var description: String
        public var cpu: String
        public var cores: Int
        public var ramGiB: Double
        public var os: String
        public var thermalState: String

        enum CodingKeys: String, CodingKey {
            case description, cpu, cores, os
            case ramGiB = "ram_gib"
            case thermalState = "thermal_state"
        }

        public init(description: String, cpu: String, cores: Int, ramGiB: Double, os: String, thermalState: String) {
            self.description = description
            self.cpu = cpu
            self.cores = cores
            self.ramGiB = ramGiB
            self.os = os
            self.thermalState = thermalState
        }
    }

    public struct Device: Codable, Equatable, Sendable {
        public var kind: String
        public var label: String
        public init(kind: String, label: String) {
            self.kind = kind
            self.label = label
        }
    }

    public struct Options: Codable, Equatable, Sendable {
        public var target: String = "coreml"
        public var runs: Int
        public var warmup: Int
        public var points: [Int]
        public var compress: String
        public var memoryLimitMB: Int?
        public var asDevice: String?
        public var memoryMetric: String

        enum CodingKeys: String, CodingKey {
            case target, runs, warmup, points, compress
            case memoryLimitMB = "memory_limit_mb"
            case asDevice = "as_device"
            case memoryMetric = "memory_metric"
        }
    }

    public struct HarnessInfo: Codable, Equatable, Sendable {
        public var planID: String
        public var finished: Bool
        public var launches: Int
        /// Foreground memory-limit exits MetricKit reported for this app in the reporting periods that
        /// end after this run started (a period is about a day, so it can hold exits of earlier that
        /// day); nil until such a payload arrives (see MetricKitLedger).
        public var metricKitMemoryExits: Int?

        enum CodingKeys: String, CodingKey {
            case finished, launches
            case planID = "plan_id"
            case metricKitMemoryExits = "metrickit_memory_exits"
        }
    }

    /// An empty result for `plan` on this machine.
    public init(plan: BenchPlan, machine: Machine, deviceLabel: String, appVersion: String, createdUTC: String) {
        self.createdUTC = createdUTC
        self.machine = machine
        versions = ["samexport": plan.samexportVersion, "harness": appVersion, "os": machine.os]
        device = Device(kind: plan.deviceKind, label: deviceLabel)
        options = Options(runs: plan.runs, warmup: plan.warmup, points: plan.points, compress: plan.compress,
                          memoryLimitMB: nil, asDevice: nil,
                          memoryMetric: "phys_footprint (the figure jetsam compares with the app's limit), MB")
        rows = []
        harness = HarnessInfo(planID: plan.planID, finished: false, launches: 0, metricKitMemoryExits: nil)
    }

    /// Jobs of `plan` that have no row yet, in plan order.
    public func pendingJobs(of plan: BenchPlan) -> [BenchJob] {
        let done = Set(rows.map(\.jobID))
        return plan.jobs.filter { !done.contains($0.id) }
    }
}

public struct BenchRow: Codable, Equatable, Sendable {
    public enum Status: String, Codable, Sendable {
        case ok, oom, error, nan
    }

    public var jobID: String
    public var model: String
    public var title: String
    public var family: String
    public var part: String
    public var points: Int?
    public var tokens: Int?
    public var precision: String
    public var computeUnit: String
    public var file: String
    public var gmacs: Double
    public var computeFloorMs: Double?
    public var memoryLimitMB: Int?
    public var status: Status
    public var stats: LatencyStats?
    public var samplesMs: [Double]?
    public var warmupMs: [Double]?
    public var compileMs: Double?
    /// The first load from a freshly compiled URL: uncached, Core ML's device specialization included.
    public var loadMs: Double?
    /// A second load from the same compiled URL.
    public var loadWarmMs: Double?
    public var firstMs: Double?
    public var peakRssMB: Double?
    public var availableMemoryMB: Double?
    public var error: String?
    /// Conditions of the measurement: thermal state and Low Power Mode when the part started and ended,
    /// and how long the runner waited for the device to cool to nominal/fair before starting.
    public var thermalStateStart: String?
    public var thermalStateEnd: String?
    public var lowPowerModeStart: Bool?
    public var lowPowerModeEnd: Bool?
    public var cooldownWaitMs: Double?
    /// phys_footprint (what jetsam compares with the limit), MB: at the job's start, the sampled peak of
    /// each stage, the kernel's exact lifetime high-water mark, and the limit as footprint + available
    /// memory at the job's start (iOS).
    public var footprintBaselineMB: Double?
    public var footprintPeakCompileMB: Double?
    public var footprintPeakLoadMB: Double?
    public var footprintPeakPredictMB: Double?
    public var footprintLifetimePeakMB: Double?
    public var footprintLimitMB: Double?
    /// Where Core ML places the ops for this compute unit (MLComputePlan, iOS 17.4+/macOS 14.4+).
    public var placement: Placement?

    enum CodingKeys: String, CodingKey {
        case model, title, family, part, points, tokens, precision, file, gmacs, status, stats, error
        case jobID = "job_id"
        case computeUnit = "compute_unit"
        case computeFloorMs = "compute_floor_ms"
        case memoryLimitMB = "memory_limit_mb"
        case samplesMs = "samples_ms"
        case warmupMs = "warmup_ms"
        case compileMs = "compile_ms"
        case loadMs = "load_ms"
        case loadWarmMs = "load_warm_ms"
        case firstMs = "first_ms"
        case peakRssMB = "peak_rss_mb"
        case availableMemoryMB = "available_memory_mb"
        case thermalStateStart = "thermal_state_start"
        case thermalStateEnd = "thermal_state_end"
        case lowPowerModeStart = "low_power_mode_start"
        case lowPowerModeEnd = "low_power_mode_end"
        case cooldownWaitMs = "cooldown_wait_ms"
        case footprintBaselineMB = "footprint_baseline_mb"
        case footprintPeakCompileMB = "footprint_peak_compile_mb"
        case footprintPeakLoadMB = "footprint_peak_load_mb"
        case footprintPeakPredictMB = "footprint_peak_predict_mb"
        case footprintLifetimePeakMB = "footprint_lifetime_peak_mb"
        case footprintLimitMB = "footprint_limit_mb"
        case placement
    }

    /// A row for `job` with nothing measured yet.
    public init(job: BenchJob, status: Status) {
        jobID = job.id
        model = job.model
        title = job.title
        family = job.family
        part = job.part
        points = job.points
        tokens = job.tokens
        precision = job.precision
        computeUnit = job.computeUnit
        file = job.file
        gmacs = job.gmacs
        self.status = status
    }
}

/// Reads and atomically rewrites the result file, so a kill between two jobs loses nothing.
public struct ResultFile {
    public let url: URL

    public init(url: URL) {
        self.url = url
    }

    public func load() throws -> BenchResult? {
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return try JSONDecoder().decode(BenchResult.self, from: Data(contentsOf: url))
    }

    public func save(_ result: BenchResult) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(result).write(to: url, options: .atomic)
    }
}

/// The compute plan summarized as samexport.coreml_placement does: the share of Core ML's estimated cost
/// on each device (percent), op counts, and the costliest ops not on the Neural Engine.
public struct Placement: Codable, Equatable, Sendable {
    public struct OffANE: Codable, Equatable, Sendable {
        public var op: String
        public var device: String
        public var cost: Double
    }

    public var costSharePercent: [String: Double?]
    public var ops: [String: Int]
    public var offANE: [OffANE]
    public var source = "MLComputePlan: preferred device and estimated cost per op"

    enum CodingKeys: String, CodingKey {
        case ops, source
        case costSharePercent = "cost_share_percent"
        case offANE = "off_ane"
    }

    public static let devices = ["ane", "gpu", "cpu"]
    public static let offANEListed = 10

    /// (op type, preferred device "ane"/"gpu"/"cpu" or nil, estimated cost or nil) per op.
    public init(ops entries: [(op: String, device: String?, cost: Double?)]) {
        var cost = Dictionary(uniqueKeysWithValues: (Self.devices + ["unknown"]).map { ($0, 0.0) })
        var count = Dictionary(uniqueKeysWithValues: (Self.devices + ["unknown"]).map { ($0, 0) })
        var off: [OffANE] = []
        for entry in entries {
            let key = entry.device.flatMap { Self.devices.contains($0) ? $0 : nil } ?? "unknown"
            count[key, default: 0] += 1
            cost[key, default: 0] += entry.cost ?? 0
            if key != "ane" {
                off.append(OffANE(op: entry.op, device: key, cost: ((entry.cost ?? 0) * 100_000).rounded() / 100_000))
            }
        }
        let total = cost.values.reduce(0, +)
        costSharePercent = cost.mapValues { total > 0 ? ($0 / total * 1000).rounded() / 10 : nil }
        ops = count
        offANE = Array(off.sorted { $0.cost > $1.cost }.prefix(Self.offANEListed))
    }
}


extension BenchResult {
    /// The result a launch continues: `previous` when it belongs to `plan` (a result of another plan is
    /// replaced by `fresh()`), with this launch counted and MetricKit's count since the run started
    /// (`memoryExits(since:)`, given the run's start) attached. A breadcrumb `crumb` that a killed launch
    /// left for a job without a row becomes that job's `oom` row; the job is returned so the caller can
    /// say so.
    public static func resuming(_ previous: BenchResult?, plan: BenchPlan, crumb: Breadcrumb?,
                                memoryExits: (Date) -> Int?,
                                fresh: () -> BenchResult) -> (result: BenchResult, killed: BenchJob?) {
        var result = previous.flatMap { $0.harness.planID == plan.planID ? $0 : nil } ?? fresh()
        result.harness.launches += 1
        let metricKitMemoryExits = memoryExits(result.startDate)
        result.harness.metricKitMemoryExits = metricKitMemoryExits
        guard let crumb, crumb.planID == plan.planID,
              let job = plan.jobs.first(where: { $0.id == crumb.jobID }),
              !result.rows.contains(where: { $0.jobID == job.id }) else { return (result, nil) }
        result.rows.append(BreadcrumbStore.oomRow(for: crumb, job: job, metricKitMemoryExits: metricKitMemoryExits))
        return (result, job)
    }

    /// When the run began (`createdUTC`; the distant past if it cannot be read, so nothing is left out).
    public var startDate: Date {
        ISO8601DateFormatter().date(from: createdUTC) ?? .distantPast
    }

    /// Whether the launch ends after the job it just measured: with one job per launch, while jobs remain.
    public func endsLaunch(of plan: BenchPlan) -> Bool {
        plan.oneJobPerLaunch == true && !pendingJobs(of: plan).isEmpty
    }

    /// What is wrong with this result as the outcome of running `plan` (empty: nothing): rows of other
    /// jobs, `ok` rows without the job's number of timed runs or a positive median, and, unless the plan
    /// runs one job per launch, jobs without a row or a result not marked finished. With one job per
    /// launch a run ends after each job, so an unfinished result is right while jobs remain.
    public func problems(against plan: BenchPlan) -> [String] {
        var problems: [String] = []
        let jobs = Dictionary(plan.jobs.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for row in rows {
            guard let job = jobs[row.jobID] else {
                problems.append("\(row.jobID): not a job of plan \(plan.planID)")
                continue
            }
            guard row.status == .ok else { continue }
            let runs = job.runs ?? plan.runs
            if row.samplesMs?.count != runs {
                problems.append("\(row.jobID): \(row.samplesMs?.count ?? 0) timed runs, the plan asks \(runs)")
            }
            if !((row.stats?.medianMs ?? 0) > 0) {
                problems.append("\(row.jobID): no positive median")
            }
        }
        let pending = pendingJobs(of: plan)
        if plan.oneJobPerLaunch == true {
            if rows.isEmpty { problems.append("no job was measured") }
            if harness.finished != pending.isEmpty {
                problems.append("finished is \(harness.finished) with \(pending.count) jobs pending")
            }
        } else {
            if !pending.isEmpty { problems.append("no row for \(pending.map(\.id).joined(separator: ", "))") }
            if !harness.finished { problems.append("the result is not marked finished") }
        }
        return problems
    }
}

extension Placement {
    /// The function of a compute plan to summarize: the job's (a multifunction package), else `main`,
    /// else the only one there is; nil when none of these exists.
    public static func function(named requested: String?, in available: [String]) -> String? {
        if let requested { return available.contains(requested) ? requested : nil }
        if available.contains("main") { return "main" }
        return available.count == 1 ? available[0] : nil
    }
}
