import Dispatch
import Foundation

/// The compute units a plan may name (`samexport bench --compute-units`); the Apple layer maps each
/// to Core ML's `MLComputeUnits`.
public enum ComputeUnit: String, CaseIterable, Sendable {
    case all
    case cpuAndNeuralEngine = "cpu_and_ne"
    case cpuAndGPU = "cpu_and_gpu"
    case cpuOnly = "cpu_only"

    public init(planName: String) throws {
        guard let unit = ComputeUnit(rawValue: planName) else {
            let names = Self.allCases.map(\.rawValue)
            throw HarnessError.unknownComputeUnit("unknown compute unit \(planName); use "
                                                  + names.dropLast().joined(separator: ", ") + " or \(names.last!)")
        }
        self = unit
    }
}

/// Core ML's latency settles over its first 15-20 predictions: warm up by a budget, at least
/// `minimumRuns` predictions and at least `minimumSeconds`, whichever takes longer.
public struct WarmupBudget: Equatable, Sendable {
    public static let minimumRunsFloor = 10
    public static let defaultMinimumSeconds = 1.0

    public let minimumRuns: Int
    public let minimumSeconds: Double

    /// The plan's `warmup`, raised to `minimumRunsFloor`.
    public init(planWarmup: Int, minimumSeconds: Double = Self.defaultMinimumSeconds) {
        minimumRuns = Swift.max(planWarmup, Self.minimumRunsFloor)
        self.minimumSeconds = minimumSeconds
    }

    /// Whether another warm-up prediction is due after `runs` of them in `elapsedMs`.
    public func wantsMore(runs: Int, elapsedMs: Double) -> Bool {
        runs < minimumRuns || elapsedMs < minimumSeconds * 1000
    }
}

/// Milliseconds between two `DispatchTime`s (`end` defaults to now).
public func milliseconds(since start: DispatchTime, until end: DispatchTime = .now()) -> Double {
    Double(end.uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
}

/// The highest footprint seen while a model runs, sampled every `interval` on a background queue
/// (the footprint peak the kernel keeps is for the whole process lifetime, not one model), and handed
/// to `onRefresh` about every `refreshInterval` so the runner can rewrite its breadcrumb with the
/// footprint near a kill. `pause()` stops the timer during timed predictions (a 5 ms timer would run
/// inside the measured latency); `sample()` takes one reading between them instead.
public final class FootprintSampler: @unchecked Sendable {
    private let read: @Sendable () -> UInt64?
    private let onRefresh: (@Sendable (UInt64) -> Void)?
    private let refreshNanoseconds: UInt64
    private let queue = DispatchQueue(label: "org.samexport.footprint", qos: .userInitiated)
    // Everything below is guarded by `lock`.
    private let lock = NSLock()
    private var timer: DispatchSourceTimer?
    private var interval: DispatchTimeInterval = .milliseconds(5)
    private var peak: UInt64 = 0
    private var stagePeakBytes: UInt64 = 0
    private var lastRefreshNanoseconds: UInt64?

    /// `read` gives the current footprint in bytes (nil when it cannot be read).
    public init(refreshInterval: DispatchTimeInterval = .milliseconds(250),
                read: @escaping @Sendable () -> UInt64?,
                onRefresh: (@Sendable (UInt64) -> Void)? = nil) {
        self.read = read
        self.onRefresh = onRefresh
        refreshNanoseconds = Self.nanoseconds(refreshInterval)
    }

    public func start(interval: DispatchTimeInterval = .milliseconds(5)) {
        let now = read() ?? 0
        lock.lock()
        peak = now
        stagePeakBytes = now
        self.interval = interval
        lock.unlock()
        resume()
    }

    /// Stops the timer until `resume()`; the peaks are kept. Returns once no timer reading is under way
    /// (so nothing after it is read by the timer); not to be called from the sampling queue.
    public func pause() {
        lock.lock()
        let running = timer
        timer = nil
        lock.unlock()
        running?.cancel()
        queue.sync {}
    }

    public func resume() {
        lock.lock()
        defer { lock.unlock() }
        guard timer == nil else { return }
        let source = DispatchSource.makeTimerSource(queue: queue)
        source.schedule(deadline: .now(), repeating: interval)
        source.setEventHandler { [weak self] in self?.sample() }
        timer = source
        source.resume()
    }

    /// The peak since the last call (or since start), and a new stage from now: per-stage peaks.
    public func stagePeak() -> UInt64 {
        sample()
        let now = read() ?? 0
        lock.lock()
        defer { lock.unlock() }
        let stage = stagePeakBytes
        stagePeakBytes = now
        return stage
    }

    /// Stops sampling; the peak in bytes.
    public func stop() -> UInt64 {
        pause()
        sample()
        lock.lock()
        defer { lock.unlock() }
        return peak
    }

    /// One reading now: folded into the peaks, and handed to `onRefresh` when a refresh is due.
    public func sample() {
        guard let now = read() else { return }
        let clock = DispatchTime.now().uptimeNanoseconds
        lock.lock()
        peak = Swift.max(peak, now)
        stagePeakBytes = Swift.max(stagePeakBytes, now)
        let due = lastRefreshNanoseconds.map { clock >= $0 + refreshNanoseconds } ?? true
        if due { lastRefreshNanoseconds = clock }
        lock.unlock()
        if due { onRefresh?(now) }
    }

    static func nanoseconds(_ interval: DispatchTimeInterval) -> UInt64 {
        switch interval {
        case .seconds(let value): return UInt64(Swift.max(value, 0)) * 1_000_000_000
        case .milliseconds(let value): return UInt64(Swift.max(value, 0)) * 1_000_000
        case .microseconds(let value): return UInt64(Swift.max(value, 0)) * 1_000
        case .nanoseconds(let value): return UInt64(Swift.max(value, 0))
        case .never: return UInt64.max / 2
        @unknown default: return 250_000_000
        }
    }
}

/// The text of a NUL-terminated C buffer (as `sysctlbyname` and `uname` fill one), decoded as UTF-8;
/// the whole buffer when it holds no NUL.
public func decodeCString(_ bytes: [CChar]) -> String {
    String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
