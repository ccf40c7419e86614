import Foundation

/// What to measure, written by `samexport bench --device iphone|m1 --via-harness` into the app's
/// bundle (`BenchPlan.json`, next to the packages). One job is one part of one model on one
/// compute unit; the app runs them in order and resumes after the first unfinished one.
public struct BenchPlan: Codable, Equatable, Sendable {
    public static let schema = "samexport.harness-plan/2"
    /// Plans this app reads: version 1 named a job's family `style`.
    public static let readableSchemas: Set<String> = ["samexport.harness-plan/1", schema]

    public let schema: String
    public let planID: String
    public let deviceKind: String
    public let runs: Int
    public let warmup: Int
    public let points: [Int]
    public let compress: String
    public let samexportVersion: String
    public let jobs: [BenchJob]
    /// Run one job, save its row and exit; the driver relaunches the app for the next. Every job then
    /// starts in a fresh process (no caches or leftovers of the previous model), and the kernel's
    /// lifetime footprint peak is that job's alone.
    public let oneJobPerLaunch: Bool?

    enum CodingKeys: String, CodingKey {
        case schema, runs, warmup, points, compress, jobs
        case oneJobPerLaunch = "one_job_per_launch"
        case planID = "plan_id"
        case deviceKind = "device_kind"
        case samexportVersion = "samexport_version"
    }

    public static func load(from url: URL) throws -> BenchPlan {
        let plan = try JSONDecoder().decode(BenchPlan.self, from: Data(contentsOf: url))
        guard readableSchemas.contains(plan.schema) else {
            throw HarnessError.unsupportedPlan("\(url.lastPathComponent) has schema \(plan.schema); this app reads \(schema)")
        }
        guard plan.runs >= 1, plan.warmup >= 0, !plan.jobs.isEmpty else {
            throw HarnessError.unsupportedPlan("\(url.lastPathComponent) needs runs >= 1, warmup >= 0 and at least one job")
        }
        if let job = plan.jobs.first(where: { ($0.runs ?? 1) < 1 }) {
            throw HarnessError.unsupportedPlan("\(url.lastPathComponent): job \(job.id) needs runs >= 1")
        }
        return plan
    }
}

public struct BenchJob: Codable, Equatable, Sendable {
    public let id: String
    /// The package in the bundle's Models folder, e.g. "RepViTSAMEncoder.mlpackage"; compiled on the device.
    public let file: String
    public let model: String
    public let title: String
    /// The model family (`samexport.families`), which decides the input contract.
    public let family: String
    public let part: String
    public let points: Int?
    public let tokens: Int?
    public let precision: String
    public let gmacs: Double
    public let computeUnit: String
    /// Timed runs for this part (samexport asks more of millisecond-scale decoders); nil: the plan's.
    public let runs: Int?
    /// The function to load from a multifunction decoder (iOS 18); nil: the package's default function.
    public let function: String?

    enum CodingKeys: String, CodingKey {
        case id, file, model, title, family, part, points, tokens, precision, gmacs, runs, function
        case computeUnit = "compute_unit"
        case legacyFamily = "style"  // plans of schema 1
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        file = try c.decode(String.self, forKey: .file)
        model = try c.decode(String.self, forKey: .model)
        title = try c.decode(String.self, forKey: .title)
        family = try c.decodeIfPresent(String.self, forKey: .family) ?? c.decode(String.self, forKey: .legacyFamily)
        part = try c.decode(String.self, forKey: .part)
        points = try c.decodeIfPresent(Int.self, forKey: .points)
        tokens = try c.decodeIfPresent(Int.self, forKey: .tokens)
        precision = try c.decode(String.self, forKey: .precision)
        gmacs = try c.decode(Double.self, forKey: .gmacs)
        computeUnit = try c.decode(String.self, forKey: .computeUnit)
        runs = try c.decodeIfPresent(Int.self, forKey: .runs)
        function = try c.decodeIfPresent(String.self, forKey: .function)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(file, forKey: .file)
        try c.encode(model, forKey: .model)
        try c.encode(title, forKey: .title)
        try c.encode(family, forKey: .family)
        try c.encode(part, forKey: .part)
        try c.encodeIfPresent(points, forKey: .points)
        try c.encodeIfPresent(tokens, forKey: .tokens)
        try c.encode(precision, forKey: .precision)
        try c.encode(gmacs, forKey: .gmacs)
        try c.encode(computeUnit, forKey: .computeUnit)
        try c.encodeIfPresent(runs, forKey: .runs)
        try c.encodeIfPresent(function, forKey: .function)
    }

    /// What a breadcrumb says before this job runs.
    public var summary: String {
        let prompt = points.map { ", \($0) pt (\(tokens ?? $0) tokens)" } ?? ""
        return "\(title) \(part)\(prompt) on \(computeUnit)"
    }
}

public enum HarnessError: Error, LocalizedError, Equatable {
    case unsupportedPlan(String)
    case missingModel(String)
    case unknownComputeUnit(String)
    case unsupportedInput(String)

    public var errorDescription: String? {
        switch self {
        case .unsupportedPlan(let message), .missingModel(let message), .unknownComputeUnit(let message),
             .unsupportedInput(let message):
            return message
        }
    }
}
