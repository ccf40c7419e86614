import Foundation
#if os(iOS)
import MetricKit
#endif

#if os(iOS)
/// Foreground memory-limit exits as MetricKit reports them: the system's own count of jetsam kills
/// of this app, which confirms the breadcrumb verdict. Payloads arrive at most once a day, so the
/// latest count is kept in a file and attached to the result whenever one is known.
public final class MetricKitMonitor: NSObject, MXMetricManagerSubscriber {
    private let store: URL

    public init(directory: URL) {
        store = directory.appendingPathComponent("samexport-metrickit.json")
        super.init()
    }

    public func start() {
        MXMetricManager.shared.add(self)
        record(MXMetricManager.shared.pastPayloads)
    }

    public func stop() {
        MXMetricManager.shared.remove(self)
    }

    /// Foreground memory-limit exits over every payload seen so far; nil before the first one.
    public var memoryExits: Int? {
        let periods = storedPeriods()
        return periods.isEmpty ? nil : periods.values.reduce(0, +)
    }

    public func didReceive(_ payloads: [MXMetricPayload]) {
        record(payloads)
    }

    /// Each payload covers one reporting period; keyed by period so a payload seen twice counts once.
    private func record(_ payloads: [MXMetricPayload]) {
        var periods = storedPeriods()
        for payload in payloads {
            guard let exits = payload.applicationExitMetrics?.foregroundExitData else { continue }
            let period = "\(payload.timeStampBegin.timeIntervalSince1970)-\(payload.timeStampEnd.timeIntervalSince1970)"
            periods[period] = exits.cumulativeMemoryResourceLimitExitCount
        }
        guard !periods.isEmpty else { return }
        try? JSONEncoder().encode(periods).write(to: store, options: .atomic)
    }

    private func storedPeriods() -> [String: Int] {
        guard let data = try? Data(contentsOf: store) else { return [:] }
        return (try? JSONDecoder().decode([String: Int].self, from: data)) ?? [:]
    }
}
#else
/// MXMetricPayload, pastPayloads and applicationExitMetrics are unavailable on macOS before macOS 26
/// (Xcode 15/16 SDKs): there the monitor records nothing, and a Mac's out-of-memory verdicts rest on
/// the breadcrumbs alone.
public final class MetricKitMonitor {
    public init(directory: URL) {}
    public func start() {}
    public func stop() {}
    public var memoryExits: Int? { nil }
}
#endif
