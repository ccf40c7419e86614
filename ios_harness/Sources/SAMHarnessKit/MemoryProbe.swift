// Apple platforms only: `swift build` on Linux compiles the platform-neutral rest of SAMHarnessKit.
#if canImport(Darwin)
import Darwin
import Foundation
#if os(iOS)
import os
#endif

/// The memory figures that decide a jetsam kill.
public enum MemoryProbe {
    /// This process's `phys_footprint` (what Xcode's memory gauge and jetsam use), bytes.
    public static func footprintBytes() -> UInt64? {
        vmInfo()?.phys_footprint
    }

    /// The exact `phys_footprint` high-water mark of this process's lifetime (the kernel's ledger, not a
    /// sample): with one job per launch it is that job's peak.
    public static func footprintPeakBytes() -> UInt64? {
        vmInfo()?.ledger_phys_footprint_peak
    }

    private static func vmInfo() -> task_vm_info_data_t? {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<integer_t>.size)
        let status = withUnsafeMutablePointer(to: &info) { pointer in
            pointer.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
                task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count)
            }
        }
        return status == KERN_SUCCESS ? info : nil
    }

    /// How much more this app may allocate before iOS ends it (`os_proc_available_memory`); nil on macOS.
    public static func availableBytes() -> UInt64? {
        #if os(iOS)
        return UInt64(os_proc_available_memory())
        #else
        return nil
        #endif
    }

    public static func megabytes(_ bytes: UInt64?) -> Double? {
        bytes.map { Double($0) / 1_048_576 }
    }
}

/// The highest footprint seen while a model runs, sampled every `interval` on a background queue
/// (the footprint peak task_info keeps is for the whole process lifetime, not one model).
public final class FootprintSampler {
    private let queue = DispatchQueue(label: "org.samexport.footprint", qos: .userInitiated)
    private let lock = NSLock()
    private var timer: DispatchSourceTimer?
    private var peak: UInt64 = 0
    private var stagePeakBytes: UInt64 = 0
    private var lastRefresh = DispatchTime(uptimeNanoseconds: 0)
    /// Called on the sampling queue about every `refreshInterval` with the current footprint (bytes):
    /// the runner rewrites its breadcrumb with it, so a killed part shows the footprint near the limit.
    public var onRefresh: ((UInt64) -> Void)?
    public var refreshInterval: DispatchTimeInterval = .milliseconds(250)

    public init() {}

    public func start(interval: DispatchTimeInterval = .milliseconds(5)) {
        lock.lock()
        peak = MemoryProbe.footprintBytes() ?? 0
        stagePeakBytes = peak
        lock.unlock()
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now(), repeating: interval)
        timer.setEventHandler { [weak self] in self?.sample() }
        self.timer = timer
        timer.resume()
    }

    /// The peak since the last call (or since start), and a new stage from now: per-stage peaks.
    public func stagePeak() -> UInt64 {
        sample()
        lock.lock()
        defer { lock.unlock() }
        let stage = stagePeakBytes
        stagePeakBytes = MemoryProbe.footprintBytes() ?? 0
        return stage
    }

    /// Stops sampling; the peak in bytes.
    public func stop() -> UInt64 {
        timer?.cancel()
        timer = nil
        sample()
        lock.lock()
        defer { lock.unlock() }
        return peak
    }

    private func sample() {
        guard let now = MemoryProbe.footprintBytes() else { return }
        lock.lock()
        peak = Swift.max(peak, now)
        stagePeakBytes = Swift.max(stagePeakBytes, now)
        let due = DispatchTime.now() >= lastRefresh + refreshInterval
        if due { lastRefresh = DispatchTime.now() }
        let refresh = onRefresh
        lock.unlock()
        if due { refresh?(now) }
    }
}
#endif
