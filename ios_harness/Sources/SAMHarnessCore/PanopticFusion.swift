import Foundation

/// One segment of a panoptic map: `id` is the value its pixels hold.
public struct PanopticSegment: Equatable {
    public let id: Int32
    public let categoryID: Int
    public let instanceID: Int
    public let isThing: Bool
    public let area: Int
}

/// RAP-SAM's panoptic fusion, run in the app on the panoptic head's outputs (what
/// `samexport.families.rapsam.panoptic.fuse` does in Python, after mmdet's MaskFormerFusionHead):
/// queries whose softmax winner is a real class with probability > `objectMaskThreshold` compete per pixel
/// by probability x sigmoid(mask logit); a segment keeps the pixels it wins where its own mask probability
/// is >= 0.5, and is dropped when that is less than `iouThreshold` of its own mask. Things get
/// `class + 1000 * instance`, stuff `class`, unclaimed pixels `void` (133).
public enum PanopticFusion {
    public static let classes = 133
    public static let things = 80
    public static let void: Int32 = 133
    public static let instanceOffset: Int32 = 1000

    /// - Parameters:
    ///   - classLogits: queries x 134 raw class logits, row-major (column 133 = no object).
    ///   - maskLogits: queries maps of `width` x `height` logits, already upscaled to the image
    ///     (MaskPostprocessing), row-major.
    /// - Returns: the map (`width` x `height`, row-major) and its segments in increasing id order.
    public static func fuse(classLogits: [Float], maskLogits: [Float], queries: Int, width: Int, height: Int,
                            objectMaskThreshold: Float = 0.8, iouThreshold: Float = 0.8,
                            filterLowScore: Bool = true) -> (map: [Int32], segments: [PanopticSegment]) {
        let columns = classes + 1
        precondition(classLogits.count == queries * columns, "class logits are queries x 134")
        let pixels = width * height
        precondition(maskLogits.count == queries * pixels, "mask logits are queries x height x width")
        var kept: [(query: Int, label: Int, score: Float)] = []
        for query in 0..<queries {
            let row = classLogits[(query * columns)..<((query + 1) * columns)]
            let peak = row.max() ?? 0
            let exps = row.map { exp($0 - peak) }
            let total = exps.reduce(0, +)
            var label = 0
            for (index, value) in exps.enumerated() where value > exps[label] {
                label = index
            }
            let score = exps[label] / total
            if label != classes && score > objectMaskThreshold {
                kept.append((query, label, score))
            }
        }
        var map = [Int32](repeating: void, count: pixels)
        guard !kept.isEmpty else {
            return (map, segments(of: map))
        }
        var owner = [Int](repeating: 0, count: pixels)
        var best = [Float](repeating: -.infinity, count: pixels)
        for (k, entry) in kept.enumerated() {
            let base = entry.query * pixels
            for pixel in 0..<pixels {
                let value = entry.score * sigmoid(maskLogits[base + pixel])
                if value > best[pixel] {
                    best[pixel] = value
                    owner[pixel] = k
                }
            }
        }
        var instance: Int32 = 1
        for (k, entry) in kept.enumerated() {
            let base = entry.query * pixels
            var area = 0
            var ownArea = 0
            var region = [Int]()
            for pixel in 0..<pixels {
                let confident = sigmoid(maskLogits[base + pixel]) >= 0.5
                if confident { ownArea += 1 }
                if owner[pixel] == k {
                    area += 1
                    if !filterLowScore || confident { region.append(pixel) }
                }
            }
            guard area > 0 && ownArea > 0 else { continue }
            if Float(area) / Float(ownArea) < iouThreshold { continue }
            let value: Int32
            if entry.label < things {
                value = Int32(entry.label) + instance * instanceOffset
                instance += 1
            } else {
                value = Int32(entry.label)
            }
            for pixel in region { map[pixel] = value }
        }
        return (map, segments(of: map))
    }

    /// The segments a map holds, in increasing id order.
    public static func segments(of map: [Int32]) -> [PanopticSegment] {
        var areas = [Int32: Int]()
        for value in map { areas[value, default: 0] += 1 }
        return areas.keys.sorted().map { id in
            let category = Int(id % instanceOffset)
            return PanopticSegment(id: id, categoryID: category, instanceID: Int(id / instanceOffset),
                                   isThing: category < things, area: areas[id] ?? 0)
        }
    }

    private static func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }
}
