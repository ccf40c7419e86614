// Apple platforms only: `swift build` on Linux compiles the platform-neutral SAMHarnessCore.
#if canImport(CoreML)
import CoreML
import Foundation
import SAMHarnessCore

/// Runs a bench plan: each job's package is compiled and loaded for its compute unit, predicted once,
/// warmed up and timed; a row is saved after every job. A breadcrumb left by a killed launch becomes
/// an `oom` row first, so relaunching the app continues where the kill happened.
public final class BenchmarkRunner {
    public struct Locations {
        /// BenchPlan.json, as `samexport bench` wrote it (next to the packages).
        public let plan: URL
        /// The folder holding the .mlpackage files the plan names.
        public let models: URL
        /// Where the result file, the breadcrumb and MetricKit's counts live (the app's Documents).
        public let output: URL

        public init(plan: URL, models: URL, output: URL) {
            self.plan = plan
            self.models = models
            self.output = output
        }

        /// The layout of the harness apps: the Models folder (packages + BenchPlan.json) in the bundle, output in Documents
        /// (or `--output DIR` on the command line of the macOS app).
        public static func app(bundle: Bundle = .main, arguments: [String] = CommandLine.arguments) throws -> Locations {
            guard let models = bundle.url(forResource: "Models", withExtension: nil),
                  FileManager.default.fileExists(atPath: models.appendingPathComponent("BenchPlan.json").path) else {
                throw HarnessError.missingModel("the app bundle has no BenchPlan.json or Models folder; run "
                                                + "`samexport bench --device iphone --prepare-only` and build again")
            }
            let plan = models.appendingPathComponent("BenchPlan.json")
            var output = try FileManager.default.url(for: .documentDirectory, in: .userDomainMask, appropriateFor: nil,
                                                     create: true)
            if let flag = arguments.firstIndex(of: "--output"), flag + 1 < arguments.count {
                output = URL(fileURLWithPath: arguments[flag + 1], isDirectory: true)
                try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
            }
            return Locations(plan: plan, models: models, output: output)
        }
    }

    public static let resultFileName = "samexport-bench.json"

    public let locations: Locations
    public let machine: BenchResult.Machine
    public let deviceLabel: String
    private let breadcrumbs: BreadcrumbStore
    private let crumbLock = NSLock()
    private var liveCrumb: Breadcrumb?
    private let metricKit: MetricKitMonitor

    public init(locations: Locations, machine: BenchResult.Machine = DeviceInfo.machine(),
                deviceLabel: String = DeviceInfo.label()) {
        self.locations = locations
        self.machine = machine
        self.deviceLabel = deviceLabel
        breadcrumbs = BreadcrumbStore(directory: locations.output)
        metricKit = MetricKitMonitor(directory: locations.output)
    }

    public var resultFile: ResultFile {
        ResultFile(url: locations.output.appendingPathComponent(Self.resultFileName))
    }

    /// Runs every job that has no row yet; `progress` hears each job before it starts and each row after.
    public func run(progress: @escaping (String) -> Void = { _ in }) async throws -> BenchResult {
        let plan = try BenchPlan.load(from: locations.plan)
        metricKit.start()
        defer { metricKit.stop() }
        #if os(macOS)
        // No App Nap or idle sleep while measuring: a napping app's timings mean nothing.
        let activity = ProcessInfo.processInfo.beginActivity(
            options: [.userInitiated, .idleSystemSleepDisabled, .latencyCritical], reason: "samexport benchmark")
        defer { ProcessInfo.processInfo.endActivity(activity) }
        #endif
        let crumb = breadcrumbs.unfinished(planID: plan.planID)
        let resumed = BenchResult.resuming(
            try resultFile.load(), plan: plan, crumb: crumb, memoryExits: metricKit.memoryExits(since:),
            fresh: { BenchResult(plan: plan, machine: machine, deviceLabel: deviceLabel,
                                 appVersion: DeviceInfo.appVersion(), createdUTC: DeviceInfo.now()) })
        var result = resumed.result
        if let killed = resumed.killed, let crumb {
            progress("\(killed.summary): OOM (the previous launch ended during \(crumb.stage))")
        }
        if breadcrumbs.exists {
            try breadcrumbs.clear()  // this plan's crumb is a row now; another plan's is stale
        }
        try resultFile.save(result)
        for job in result.pendingJobs(of: plan) {
            progress("\(job.summary)…")
            let row = await measure(job, plan: plan)
            result.rows.append(row)
            try resultFile.save(result)
            if result.endsLaunch(of: plan) {
                progress("one job per launch: exiting; the driver relaunches for the next job")
                return result
            }
            progress("\(job.summary): \(row.stats.map { String(format: "%.1f ms", $0.medianMs) } ?? row.status.rawValue.uppercased())")
        }
        result.harness.finished = true
        result.harness.metricKitMemoryExits = metricKit.memoryExits(since: result.startDate)
        try resultFile.save(result)
        return result
    }

    static func computeUnits(_ name: String) throws -> MLComputeUnits {
        switch try ComputeUnit(planName: name) {
        case .all: return .all
        case .cpuAndNeuralEngine: return .cpuAndNeuralEngine
        case .cpuAndGPU: return .cpuAndGPU
        case .cpuOnly: return .cpuOnly
        }
    }

    /// One job, in this process; errors become an `error` row, a kill leaves the breadcrumb.
    func measure(_ job: BenchJob, plan: BenchPlan) async -> BenchRow {
        var row = BenchRow(job: job, status: .ok)
        let sampler = MemoryProbe.sampler { [weak self] footprint in self?.refreshCrumb(footprintBytes: footprint) }
        var compiled: URL?
        defer {
            if let compiled { try? FileManager.default.removeItem(at: compiled) }
            endCrumb()
        }
        do {
            let configuration = MLModelConfiguration()
            configuration.computeUnits = try Self.computeUnits(job.computeUnit)
            if let function = job.function {
                guard #available(iOS 18.0, macOS 15.0, *) else {
                    throw HarnessError.unsupportedPlan("\(job.file) is a multifunction package; it needs iOS 18 / macOS 15")
                }
                configuration.functionName = function
            }
            let package = locations.models.appendingPathComponent(job.file)
            guard FileManager.default.fileExists(atPath: package.path) else {
                throw HarnessError.missingModel("\(job.file) is not in the app's Models folder")
            }
            row.cooldownWaitMs = await Self.waitForCoolDevice()
            row.thermalStateStart = DeviceInfo.thermalState(ProcessInfo.processInfo.thermalState)
            row.lowPowerModeStart = ProcessInfo.processInfo.isLowPowerModeEnabled
            row.availableMemoryMB = MemoryProbe.megabytes(MemoryProbe.availableBytes())
            row.footprintBaselineMB = MemoryProbe.megabytes(MemoryProbe.footprintBytes())
            if let footprint = row.footprintBaselineMB, let available = row.availableMemoryMB {
                row.footprintLimitMB = footprint + available
            }
            sampler.start()

            try mark(job, of: plan, stage: "compile")
            var start = DispatchTime.now()
            compiled = try await MLModel.compileModel(at: package)
            row.compileMs = milliseconds(since: start)
            row.footprintPeakCompileMB = MemoryProbe.megabytes(sampler.stagePeak())

            try mark(job, of: plan, stage: "load")
            start = DispatchTime.now()
            // compileModel writes a new URL per job, so this first load is uncached: it includes Core ML's
            // specialization for this device. The second load from the same URL is the warm load.
            _ = try await MLModel.load(contentsOf: try unwrap(compiled), configuration: configuration)  // released here
            row.loadMs = milliseconds(since: start)
            start = DispatchTime.now()
            let model = try await MLModel.load(contentsOf: try unwrap(compiled), configuration: configuration)
            row.loadWarmMs = milliseconds(since: start)
            row.footprintPeakLoadMB = MemoryProbe.megabytes(sampler.stagePeak())
            // After the timed loads: loading a compute plan first could specialize the model for the
            // device and make the "uncached" first load a cached one.
            if #available(iOS 17.4, macOS 14.4, *) {
                row.placement = try? await Self.placement(of: try unwrap(compiled), configuration: configuration,
                                                          function: job.function)
            }
            let inputs = try ModelInputs.benchmark(for: model.modelDescription, tokens: job.tokens)

            try mark(job, of: plan, stage: "first prediction")
            start = DispatchTime.now()
            let outputs = try model.prediction(from: inputs)
            row.firstMs = milliseconds(since: start)
            let nonFinite = ModelInputs.nonFinite(in: outputs)

            try mark(job, of: plan, stage: "warm-up and timed predictions")
            row.warmupMs = try warmUp(WarmupBudget(planWarmup: plan.warmup)) {
                _ = try model.prediction(from: inputs)
            }
            // The warm-up reached the predictions' footprint with the 5 ms sampler running; during the
            // timed runs it is paused (its timer would run inside the latency measured) and the
            // footprint is read between two predictions instead.
            sampler.pause()
            let samples = try (0..<(job.runs ?? plan.runs)).map { _ in
                let duration = try timed { _ = try model.prediction(from: inputs) }
                sampler.sample()
                return duration
            }
            row.samplesMs = samples
            row.footprintPeakPredictMB = MemoryProbe.megabytes(sampler.stagePeak())
            row.stats = LatencyStats(samplesMs: samples)
            if nonFinite > 0 {
                row.status = .nan
                row.error = "\(nonFinite) NaN/Inf output values"
            }
        } catch {
            row.status = .error
            row.error = error.localizedDescription
        }
        row.thermalStateEnd = DeviceInfo.thermalState(ProcessInfo.processInfo.thermalState)
        row.lowPowerModeEnd = ProcessInfo.processInfo.isLowPowerModeEnabled
        row.peakRssMB = MemoryProbe.megabytes(sampler.stop())
        row.footprintLifetimePeakMB = MemoryProbe.megabytes(MemoryProbe.footprintPeakBytes())
        return row
    }

    private func mark(_ job: BenchJob, of plan: BenchPlan, stage: String) throws {
        let crumb = Breadcrumb(planID: plan.planID, jobID: job.id, summary: job.summary, startedUTC: DeviceInfo.now(),
                               stage: stage,
                               availableMemoryMB: MemoryProbe.megabytes(MemoryProbe.availableBytes()),
                               footprintMB: MemoryProbe.megabytes(MemoryProbe.footprintBytes()))
        crumbLock.lock()
        defer { crumbLock.unlock() }
        liveCrumb = crumb
        try breadcrumbs.write(crumb)
    }

    /// The live crumb rewritten with the footprint of now (from the sampler's queue, about every 250 ms).
    private func refreshCrumb(footprintBytes: UInt64) {
        crumbLock.lock()
        defer { crumbLock.unlock() }
        guard let crumb = liveCrumb else { return }
        let fresh = crumb.refreshed(footprintMB: MemoryProbe.megabytes(footprintBytes),
                                    availableMemoryMB: MemoryProbe.megabytes(MemoryProbe.availableBytes()))
        liveCrumb = fresh
        try? breadcrumbs.write(fresh)
    }

    private func endCrumb() {
        crumbLock.lock()
        defer { crumbLock.unlock() }
        liveCrumb = nil
        try? breadcrumbs.clear()
    }

    private func unwrap(_ url: URL?) throws -> URL {
        guard let url else { throw HarnessError.missingModel("the package did not compile") }
        return url
    }

    /// Where Core ML places each op of the compiled model for this configuration's compute units: the
    /// job's function of a multifunction package, else `main` (or the only function).
    @available(iOS 17.4, macOS 14.4, *)
    static func placement(of compiled: URL, configuration: MLModelConfiguration,
                          function requested: String?) async throws -> Placement? {
        let plan = try await MLComputePlan.load(contentsOf: compiled, configuration: configuration)
        guard case let .program(program) = plan.modelStructure,
              let name = Placement.function(named: requested, in: Array(program.functions.keys)),
              let function = program.functions[name] else { return nil }
        let entries: [(op: String, device: String?, cost: Double?)] = function.block.operations
            .filter { $0.operatorName != "const" }
            .map { operation in
                let device: String?
                switch plan.deviceUsage(for: operation)?.preferred {
                case .neuralEngine?: device = "ane"
                case .gpu?: device = "gpu"
                case .cpu?: device = "cpu"
                default: device = nil
                }
                return (op: operation.operatorName, device: device, cost: plan.estimatedCost(of: operation)?.weight)
            }
        return Placement(ops: entries)
    }

    /// One prediction's duration; its autoreleased buffers are freed before the next one starts.
    private func timed(_ body: () throws -> Void) throws -> Double {
        try autoreleasepool {
            let start = DispatchTime.now()
            try body()
            return milliseconds(since: start)
        }
    }

    /// Warm-up predictions until `budget` is spent; their durations.
    private func warmUp(_ budget: WarmupBudget, _ body: () throws -> Void) throws -> [Double] {
        var durations: [Double] = []
        let start = DispatchTime.now()
        while budget.wantsMore(runs: durations.count, elapsedMs: milliseconds(since: start)) {
            durations.append(try timed(body))
        }
        return durations
    }

    /// Waits, at most `cap` seconds, for the thermal state to be nominal or fair; the time waited in ms.
    static func waitForCoolDevice(cap: Double = 120) async -> Double {
        let start = DispatchTime.now()
        while ProcessInfo.processInfo.thermalState.rawValue > ProcessInfo.ThermalState.fair.rawValue,
              milliseconds(since: start) < cap * 1000 {
            try? await Task.sleep(nanoseconds: 2_000_000_000)
        }
        return milliseconds(since: start)
    }
}
#endif
