import Foundation

/// The host-side steps of everything mode (automatic mask generation) with the official
/// `SamAutomaticMaskGenerator` semantics, as `samexport.amg` implements them in Python: the point
/// grid, crop boxes, stability score, boxes from masks, box NMS, the crop-edge rule and the split of
/// prompt sets into the decoder's batch sizes. GoldenFixtureTests checks each against Python's values.
public enum EverythingMode {
    /// `n * n` normalized (x, y) cell centres in [0, 1], row-major with x fastest.
    public static func pointGrid(perSide n: Int) -> [(x: Double, y: Double)] {
        let offset = 1.0 / Double(2 * n)
        let side = linspace(offset, 1 - offset, count: n)
        return side.flatMap { y in side.map { x in (x: x, y: y) } }
    }

    /// XYXY crop boxes: the whole image, then for layer i 2^i crops per side overlapping by
    /// `overlapRatio` of the short side, x0 outer and y0 inner; with the layer of each.
    public static func cropBoxes(width: Int, height: Int, layers: Int, overlapRatio: Double) -> [(box: [Int], layer: Int)] {
        var boxes: [(box: [Int], layer: Int)] = [([0, 0, width, height], 0)]
        guard layers > 0 else { return boxes }
        for layer in 1...layers {
            let perSide = 1 << layer
            let overlap = Int(overlapRatio * Double(min(width, height)) * (2.0 / Double(perSide)))
            let cropWidth = Int((Double(overlap * (perSide - 1) + width) / Double(perSide)).rounded(.up))
            let cropHeight = Int((Double(overlap * (perSide - 1) + height) / Double(perSide)).rounded(.up))
            for i in 0..<perSide {
                for j in 0..<perSide {
                    let x0 = (cropWidth - overlap) * i
                    let y0 = (cropHeight - overlap) * j
                    boxes.append(([x0, y0, min(x0 + cropWidth, width), min(y0 + cropHeight, height)], layer))
                }
            }
        }
        return boxes
    }

    /// |logits > t + offset| / |logits > t - offset|; NaN when the second set is empty.
    public static func stabilityScore(_ logits: [Float], threshold: Float = 0, offset: Float = 1) -> Float {
        var intersection = 0
        var union = 0
        for value in logits {
            if value > threshold + offset { intersection += 1 }
            if value > threshold - offset { union += 1 }
        }
        return Float(intersection) / Float(union)
    }

    /// XYXY box of a row-major mask with inclusive maxima; [0, 0, 0, 0] for an empty mask.
    public static func maskBox(_ mask: [Bool], width: Int, height: Int) -> [Int] {
        var x0 = width, y0 = height, x1 = -1, y1 = -1
        for row in 0..<height {
            for column in 0..<width where mask[row * width + column] {
                x0 = min(x0, column)
                x1 = max(x1, column)
                y0 = min(y0, row)
                y1 = max(y1, row)
            }
        }
        return x1 < 0 ? [0, 0, 0, 0] : [x0, y0, x1, y1]
    }

    /// Greedy NMS: indices kept, in decreasing score order (ties keep their order); a box goes only when
    /// its IoU with a kept box, computed in Float with areas (x1 - x0) * (y1 - y0), exceeds the threshold.
    public static func boxNMS(_ boxes: [[Float]], scores: [Float], iouThreshold: Float) -> [Int] {
        let order = boxes.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
        let areas = boxes.map { ($0[2] - $0[0]) * ($0[3] - $0[1]) }
        var suppressed = [Bool](repeating: false, count: boxes.count)
        var keep: [Int] = []
        for (rank, i) in order.enumerated() where !suppressed[i] {
            keep.append(i)
            for j in order[(rank + 1)...] where !suppressed[j] {
                let width = max(0, min(boxes[i][2], boxes[j][2]) - max(boxes[i][0], boxes[j][0]))
                let height = max(0, min(boxes[i][3], boxes[j][3]) - max(boxes[i][1], boxes[j][1]))
                let intersection = width * height
                if intersection / (areas[i] + areas[j] - intersection) > iouThreshold {
                    suppressed[j] = true
                }
            }
        }
        return keep
    }

    /// Whether a box (XYXY, in its crop's frame) lies within `tolerance` of a crop edge that is not an
    /// image edge; such masks are cut by the crop and dropped.
    public static func nearCropEdge(_ box: [Int], cropBox: [Int], imageBox: [Int], tolerance: Float = 20) -> Bool {
        let moved = [box[0] + cropBox[0], box[1] + cropBox[1], box[2] + cropBox[0], box[3] + cropBox[1]]
        return (0..<4).contains { side in
            let value = Float(moved[side])
            return abs(value - Float(cropBox[side])) <= tolerance && abs(value - Float(imageBox[side])) > tolerance
        }
    }

    /// One decoder call of a split: prompt sets `start..<start + count`, padded to `padded` by
    /// repeating the last set (a Core ML decoder takes only its enumerated batch sizes).
    public struct Batch: Equatable {
        public let start: Int
        public let count: Int
        public let padded: Int
    }

    /// `count` prompt sets in calls of at most the largest batch size, each padded to the smallest
    /// batch size that holds it.
    public static func batches(count: Int, batchSizes: [Int]) -> [Batch] {
        let sizes = batchSizes.sorted()
        guard let largest = sizes.last else { return [] }
        return stride(from: 0, to: count, by: largest).map { start in
            let n = min(largest, count - start)
            return Batch(start: start, count: n, padded: sizes.first { $0 >= n } ?? largest)
        }
    }

    /// `np.linspace(start, stop, count)`: start + i * step, the last value exactly `stop`.
    static func linspace(_ start: Double, _ stop: Double, count: Int) -> [Double] {
        guard count > 1 else { return count == 1 ? [start] : [] }
        let step = (stop - start) / Double(count - 1)
        return (0..<count).map { $0 == count - 1 ? stop : start + Double($0) * step }
    }
}
