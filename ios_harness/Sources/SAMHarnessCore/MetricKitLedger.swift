import Foundation

/// MetricKit's count of this app's foreground memory-limit exits (jetsam kills), one count per
/// reporting period, kept in a file: payloads arrive at most once a day, usually after the run.
/// `memoryExits(since:)` ties the count to a run: only periods that end after the run started count.
/// A period is about a day long, so its count can include exits from before the run on that day.
public struct MetricKitLedger: Sendable {
    public struct Period: Codable, Equatable, Sendable {
        /// Seconds since 1970.
        public let begin: Double
        public let end: Double
        public let memoryExits: Int

        enum CodingKeys: String, CodingKey {
            case begin, end
            case memoryExits = "memory_exits"
        }

        public init(begin: Date, end: Date, memoryExits: Int) {
            self.begin = begin.timeIntervalSince1970
            self.end = end.timeIntervalSince1970
            self.memoryExits = memoryExits
        }
    }

    public let url: URL

    public init(directory: URL) {
        url = directory.appendingPathComponent("samexport-metrickit-periods.json")
    }

    /// Every period recorded so far (an unreadable file counts as none).
    public func periods() -> [Period] {
        guard let data = try? Data(contentsOf: url) else { return [] }
        return (try? JSONDecoder().decode([Period].self, from: data)) ?? []
    }

    /// Adds `new` periods; a period seen again (same begin and end) replaces its earlier count.
    public func record(_ new: [Period]) throws {
        guard !new.isEmpty else { return }
        var byPeriod: [String: Period] = [:]
        for period in periods() + new {
            byPeriod["\(period.begin)-\(period.end)"] = period
        }
        let sorted = byPeriod.values.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        try JSONEncoder().encode(sorted).write(to: url, options: .atomic)
    }

    /// Exits counted in periods that end at or after `start`; nil while no such period has arrived.
    public func memoryExits(since start: Date) -> Int? {
        let overlapping = periods().filter { $0.end >= start.timeIntervalSince1970 }
        return overlapping.isEmpty ? nil : overlapping.map(\.memoryExits).reduce(0, +)
    }
}
