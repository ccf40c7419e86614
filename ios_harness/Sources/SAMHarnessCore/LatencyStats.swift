import Foundation

/// Latency statistics with the definitions `samexport bench` uses (samexport/bench/stats.py, NumPy):
/// median and p90 interpolated linearly between order statistics, population standard deviation.
public struct LatencyStats: Codable, Equatable, Sendable {
    public let n: Int
    public let medianMs: Double
    public let p90Ms: Double
    public let minMs: Double
    public let maxMs: Double
    public let meanMs: Double
    public let stdMs: Double

    enum CodingKeys: String, CodingKey {
        case n
        case medianMs = "median_ms"
        case p90Ms = "p90_ms"
        case minMs = "min_ms"
        case maxMs = "max_ms"
        case meanMs = "mean_ms"
        case stdMs = "std_ms"
    }

    /// nil for an empty sample list.
    public init?(samplesMs: [Double]) {
        guard !samplesMs.isEmpty else { return nil }
        let sorted = samplesMs.sorted()
        let count = Double(sorted.count)
        let mean = sorted.reduce(0, +) / count
        n = sorted.count
        medianMs = Self.percentile(sorted: sorted, 50)
        p90Ms = Self.percentile(sorted: sorted, 90)
        minMs = sorted[0]
        maxMs = sorted[sorted.count - 1]
        meanMs = mean
        stdMs = (sorted.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / count).squareRoot()
    }

    /// `numpy.percentile(values, q)` (method "linear") of values already sorted ascending.
    public static func percentile(sorted: [Double], _ q: Double) -> Double {
        precondition(!sorted.isEmpty, "percentile of no values")
        let rank = q / 100 * Double(sorted.count - 1)
        let lower = Int(rank.rounded(.down))
        let upper = Swift.min(lower + 1, sorted.count - 1)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (rank - Double(lower))
    }
}
