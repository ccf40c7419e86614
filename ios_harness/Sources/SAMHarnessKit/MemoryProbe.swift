// Apple platforms only: `swift build` on Linux compiles the platform-neutral SAMHarnessCore.
#if canImport(Darwin)
import Darwin
import Foundation
import SAMHarnessCore
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
    /// sample): with one job per launch it is that job's peak. `ledger_phys_footprint_peak` is an
    /// `int64_t` in xnu's task_info.h (a ledger can be negative); nil when the kernel did not fill it.
    public static func footprintPeakBytes() -> UInt64? {
        guard let peak = vmInfo()?.ledger_phys_footprint_peak, peak > 0 else { return nil }
        return UInt64(peak)
    }

    /// The sampler of the runner: this process's footprint.
    public static func sampler(onRefresh: (@Sendable (UInt64) -> Void)? = nil) -> FootprintSampler {
        FootprintSampler(read: { footprintBytes() }, onRefresh: onRefresh)
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
#endif
