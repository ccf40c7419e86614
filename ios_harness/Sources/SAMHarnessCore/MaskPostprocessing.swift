import Foundation

/// Low-resolution mask logits -> masks on the original image, with PyTorch's resampling
/// (`F.interpolate(..., align_corners=False)`), as samexport.transforms and the official models do.
public enum MaskPostprocessing {
    public static let lowResSize = 256

    /// One 256x256 logit map (row-major) -> logits at `geometry`'s original size, row-major.
    /// SAM-style: bilinear to 1024x1024, crop the letterboxed area, bilinear to H x W.
    /// EfficientSAM: one bicubic resize from 256x256 to H x W.
    public static func upscale(_ lowRes: [Float], geometry: ImageGeometry) -> [Float] {
        precondition(lowRes.count == lowResSize * lowResSize, "a low-res mask has 256x256 values")
        switch geometry.family {
        case .sam:
            let size = SAMInputContract.modelSize
            let full = resizeBilinear(lowRes, width: lowResSize, height: lowResSize, toWidth: size, toHeight: size)
            let cropped = crop(full, width: size, toWidth: geometry.resizedWidth, toHeight: geometry.resizedHeight)
            return resizeBilinear(cropped, width: geometry.resizedWidth, height: geometry.resizedHeight,
                                  toWidth: geometry.width, toHeight: geometry.height)
        case .efficientSAM:
            return resizeBicubic(lowRes, width: lowResSize, height: lowResSize,
                                 toWidth: geometry.width, toHeight: geometry.height)
        }
    }

    /// Logits > threshold (0.0 for every samexport model).
    public static func binarize(_ logits: [Float], threshold: Float = 0) -> [Bool] {
        logits.map { $0 > threshold }
    }

    /// The documented rule: token 0 answers an unambiguous prompt; for an ambiguous one (a single
    /// click) take the best IoU among tokens 1...3.
    public static func selectToken(iouScores: [Float], multimask: Bool) -> Int {
        precondition(iouScores.count == 4, "SAM decoders predict 4 masks")
        guard multimask else { return 0 }
        var best = 1
        for token in 2...3 where iouScores[token] > iouScores[best] {
            best = token
        }
        return best
    }

    /// Whether a prompt is ambiguous enough for the multimask answer: one click, no box.
    public static func wantsMultimask(_ prompt: Prompt) -> Bool {
        prompt.box == nil && prompt.clicks.count == 1
    }

    /// The top-left `toWidth` x `toHeight` block of a row-major map `width` wide.
    public static func crop(_ values: [Float], width: Int, toWidth: Int, toHeight: Int) -> [Float] {
        var out = [Float]()
        out.reserveCapacity(toWidth * toHeight)
        for row in 0..<toHeight {
            out.append(contentsOf: values[(row * width)..<(row * width + toWidth)])
        }
        return out
    }

    /// `F.interpolate(x, (toHeight, toWidth), mode="bilinear", align_corners=False)` of one map.
    public static func resizeBilinear(_ values: [Float], width: Int, height: Int, toWidth: Int, toHeight: Int) -> [Float] {
        let xs = (0..<toWidth).map { linearTap($0, input: width, output: toWidth) }
        let ys = (0..<toHeight).map { linearTap($0, input: height, output: toHeight) }
        var out = [Float](repeating: 0, count: toWidth * toHeight)
        for (row, y) in ys.enumerated() {
            let top = y.index * width
            let bottom = y.next * width
            for (column, x) in xs.enumerated() {
                let upper = values[top + x.index] * (1 - x.weight) + values[top + x.next] * x.weight
                let lower = values[bottom + x.index] * (1 - x.weight) + values[bottom + x.next] * x.weight
                out[row * toWidth + column] = upper * (1 - y.weight) + lower * y.weight
            }
        }
        return out
    }

    /// `F.interpolate(x, (toHeight, toWidth), mode="bicubic", align_corners=False)` of one map
    /// (Keys cubic with a = -0.75, source indices clamped at the border, as PyTorch does).
    public static func resizeBicubic(_ values: [Float], width: Int, height: Int, toWidth: Int, toHeight: Int) -> [Float] {
        let xs = (0..<toWidth).map { cubicTaps($0, input: width, output: toWidth) }
        let ys = (0..<toHeight).map { cubicTaps($0, input: height, output: toHeight) }
        var out = [Float](repeating: 0, count: toWidth * toHeight)
        for (row, y) in ys.enumerated() {
            for (column, x) in xs.enumerated() {
                var sum: Float = 0
                for (yIndex, yWeight) in zip(y.indices, y.weights) {
                    var line: Float = 0
                    for (xIndex, xWeight) in zip(x.indices, x.weights) {
                        line += values[yIndex * width + xIndex] * xWeight
                    }
                    sum += line * yWeight
                }
                out[row * toWidth + column] = sum
            }
        }
        return out
    }

    private struct LinearTap {
        let index: Int
        let next: Int
        let weight: Float
    }

    private static func linearTap(_ index: Int, input: Int, output: Int) -> LinearTap {
        let scale = Float(input) / Float(output)
        let source = Swift.max((Float(index) + 0.5) * scale - 0.5, 0)
        let lower = Swift.min(Int(source), input - 1)
        return LinearTap(index: lower, next: Swift.min(lower + 1, input - 1), weight: source - Float(lower))
    }

    private struct CubicTaps {
        let indices: [Int]
        let weights: [Float]
    }

    private static func cubicTaps(_ index: Int, input: Int, output: Int) -> CubicTaps {
        let scale = Float(input) / Float(output)
        let source = (Float(index) + 0.5) * scale - 0.5
        let floorSource = source.rounded(.down)
        let t = source - floorSource
        let a: Float = -0.75
        func near(_ x: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }
        func far(_ x: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        let base = Int(floorSource)
        let indices = (-1...2).map { Swift.min(Swift.max(base + $0, 0), input - 1) }
        return CubicTaps(indices: indices, weights: [far(t + 1), near(t), near(1 - t), far(2 - t)])
    }
}
