// Apple platforms only: `swift build` on Linux compiles the platform-neutral SAMHarnessCore.
#if canImport(Darwin)
import Foundation
import SAMHarnessCore

/// What the result file says about the machine it was measured on.
public enum DeviceInfo {
    /// The hardware identifier: "iPhone13,2" on a phone, "Mac14,2" on a Mac.
    public static func hardwareModel() -> String {
        #if os(iOS)
        var system = utsname()
        uname(&system)
        return withUnsafeBytes(of: &system.machine) { bytes in
            decodeCString(bytes.map { CChar(bitPattern: $0) })
        }
        #else
        return sysctlString("hw.model") ?? "Mac"
        #endif
    }

    /// "Apple M1" on a Mac; the hardware identifier on a phone (iOS does not name its chip).
    public static func chip() -> String {
        sysctlString("machdep.cpu.brand_string") ?? hardwareModel()
    }

    public static func machine() -> BenchResult.Machine {
        let info = ProcessInfo.processInfo
        let ram = Double(info.physicalMemory) / 1_073_741_824
        #if os(iOS)
        let os = "iOS \(info.operatingSystemVersionString)"
        #else
        let os = "macOS \(info.operatingSystemVersionString)"
        #endif
        return BenchResult.Machine(
            description: String(format: "%@ (%@), %ld cores, %.0f GiB RAM, %@", hardwareModel(), chip(),
                                info.processorCount, ram, os),
            cpu: chip(), cores: info.processorCount, ramGiB: (ram * 10).rounded() / 10, os: os,
            thermalState: thermalState(info.thermalState))
    }

    /// The device column of the tables; `samexport bench` replaces it with the marketing name it knows.
    public static func label() -> String {
        "Core ML, \(hardwareModel())"
    }

    public static func appVersion() -> String {
        Bundle.main.object(forInfoDictionaryKey: "CFBundleShortVersionString") as? String ?? "unknown"
    }

    public static func now() -> String {
        ISO8601DateFormatter().string(from: Date())
    }

    static func thermalState(_ state: ProcessInfo.ThermalState) -> String {
        switch state {
        case .nominal: return "nominal"
        case .fair: return "fair"
        case .serious: return "serious"
        case .critical: return "critical"
        @unknown default: return "unknown"
        }
    }

    static func sysctlString(_ name: String) -> String? {
        var size = 0
        guard sysctlbyname(name, nil, &size, nil, 0) == 0, size > 0 else { return nil }
        var bytes = [CChar](repeating: 0, count: size)
        guard sysctlbyname(name, &bytes, &size, nil, 0) == 0 else { return nil }
        return decodeCString(bytes)
    }
}
#endif
