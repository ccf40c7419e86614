import Foundation
import SAMHarnessCore
#if os(iOS)
import MetricKit
#endif

#if os(iOS)
/// Foreground memory-limit exits as MetricKit reports them: the system's own count of jetsam kills
/// of this app, which confirms the breadcrumb verdict. Payloads arrive at most once a day, so each
/// period's count is kept in a MetricKitLedger file and attached to the result when a period that ends
/// after the run's start is known.
public final class MetricKitMonitor: NSObject, MXMetricManagerSubscriber {
    private let ledger: MetricKitLedger

    public init(directory: URL) {
        ledger = MetricKitLedger(directory: directory)
        super.init()
    }

    public func start() {
        MXMetricManager.shared.add(self)
        record(MXMetricManager.shared.pastPayloads)
    }

    public func stop() {
        MXMetricManager.shared.remove(self)
    }

    /// Foreground memory-limit exits in the periods that end at or after `start`; nil before such a payload.
    public func memoryExits(since start: Date) -> Int? {
        ledger.memoryExits(since: start)
    }

    public func didReceive(_ payloads: [MXMetricPayload]) {
        record(payloads)
    }

    private func record(_ payloads: [MXMetricPayload]) {
        let periods = payloads.compactMap { payload -> MetricKitLedger.Period? in
            guard let exits = payload.applicationExitMetrics?.foregroundExitData else { return nil }
            return MetricKitLedger.Period(begin: payload.timeStampBegin, end: payload.timeStampEnd,
                                          memoryExits: exits.cumulativeMemoryResourceLimitExitCount)
        }
        try? ledger.record(periods)
    }
}
#else
/// MXMetricPayload, pastPayloads and applicationExitMetrics are unavailable on macOS before macOS 26
/// (Xcode 16 SDKs): there the monitor records nothing, and a Mac's out-of-memory verdicts rest on
/// the breadcrumbs alone.
public final class MetricKitMonitor {
    public init(directory: URL) {}
    public func start() {}
    public func stop() {}
    public func memoryExits(since start: Date) -> Int? { nil }
}
#endif
