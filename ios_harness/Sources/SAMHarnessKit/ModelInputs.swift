// Apple platforms only: `swift build` on Linux compiles the platform-neutral SAMHarnessCore.
#if canImport(CoreML)
import CoreML
import CoreVideo
import Foundation
import SAMHarnessCore

/// Model inputs built from a package's own description.
public enum ModelInputs {
    /// The decoder's `points` input for one prompt set (1 x N x 3: x, y, label per token).
    public static func packedPoints(_ tokens: [PromptToken]) throws -> MLMultiArray {
        try packedPointBatch([tokens], padTo: 1)
    }

    /// The decoder's `points` input for B prompt sets of N tokens each (B x N x 3), padded to `padTo`
    /// sets by repeating the last one (a Core ML decoder takes only its enumerated batch sizes; see
    /// `EverythingMode.batches`). Outputs for the padding sets are to be ignored.
    public static func packedPointBatch(_ sets: [[PromptToken]], padTo: Int) throws -> MLMultiArray {
        guard let last = sets.last, sets.allSatisfy({ $0.count == last.count }), padTo >= sets.count else {
            throw HarnessError.unsupportedInput("a batch needs 1 or more prompt sets of one token count, "
                                                + "at most \(padTo) of them")
        }
        let padded = sets + Array(repeating: last, count: padTo - sets.count)
        let tokens = last.count
        let array = try MLMultiArray(shape: [NSNumber(value: padTo), NSNumber(value: tokens), 3], dataType: .float32)
        array.withUnsafeMutableBufferPointer(ofType: Float.self) { values, _ in
            for (set, prompt) in padded.enumerated() {
                for (index, token) in prompt.enumerated() {
                    let base = 3 * (set * tokens + index)
                    values[base] = token.x
                    values[base + 1] = token.y
                    values[base + 2] = token.label
                }
            }
        }
        return array
    }

    /// An all-zero float32 array (the mask prompt when there is none).
    public static func zeros(_ shape: [Int]) throws -> MLMultiArray {
        let array = try MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: .float32)
        array.withUnsafeMutableBufferPointer(ofType: Float.self) { values, _ in
            values.initialize(repeating: 0)
        }
        return array
    }

    /// Seeded inputs of the shapes the model declares, for benchmarking: noise pixels, `tokens`
    /// clicks in the points input (which must be one of its enumerated shapes), no mask prompt.
    public static func benchmark(for description: MLModelDescription, tokens: Int?) throws -> MLFeatureProvider {
        var generator = SplitMix64(seed: 0)
        var features: [String: MLFeatureValue] = [:]
        for (name, input) in description.inputDescriptionsByName {
            switch input.type {
            case .image:
                guard let constraint = input.imageConstraint else {
                    throw HarnessError.unsupportedInput("image input \(name) has no size constraint")
                }
                features[name] = MLFeatureValue(pixelBuffer: try ImageCanvas.noise(width: constraint.pixelsWide,
                                                                                   height: constraint.pixelsHigh))
            case .multiArray:
                guard let constraint = input.multiArrayConstraint else {
                    throw HarnessError.unsupportedInput("array input \(name) has no shape constraint")
                }
                features[name] = MLFeatureValue(multiArray: try array(named: name, constraint: constraint, tokens: tokens,
                                                                     generator: &generator))
            default:
                throw HarnessError.unsupportedInput("input \(name) is neither an image nor an array; "
                                                    + "this harness measures samexport packages")
            }
        }
        return try MLDictionaryFeatureProvider(dictionary: features)
    }

    private static func array(named name: String, constraint: MLMultiArrayConstraint, tokens: Int?,
                              generator: inout SplitMix64) throws -> MLMultiArray {
        var shape = constraint.shape.map(\.intValue)
        if name == "points", let tokens {
            shape = [1, tokens, 3]
            let shapes = constraint.shapeConstraint.enumeratedShapes.map { $0.map(\.intValue) }
            if constraint.shapeConstraint.type == .enumerated, !shapes.contains(shape) {
                throw HarnessError.unsupportedInput("the decoder takes \(shapes.map { $0[1] }) tokens, not \(tokens); "
                                                    + "convert with --points covering this count")
            }
            let clicks = (0..<tokens).map { _ in
                PromptToken(x: Float.random(in: 0..<1024, using: &generator),
                            y: Float.random(in: 0..<1024, using: &generator), label: 1)
            }
            return try packedPoints(clicks)
        }
        if name == "maskInput" || name == "hasMaskInput" {
            return try zeros(shape)
        }
        let array = try MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: .float32)
        array.withUnsafeMutableBufferPointer(ofType: Float.self) { values, _ in
            for index in values.indices {
                values[index] = Float.random(in: -1...1, using: &generator)
            }
        }
        return array
    }

    /// How many NaN/Inf values the float outputs hold.
    public static func nonFinite(in outputs: MLFeatureProvider) -> Int {
        var count = 0
        for name in outputs.featureNames {
            guard let array = outputs.featureValue(for: name)?.multiArrayValue else { continue }
            switch array.dataType {
            case .float32:
                array.withUnsafeBufferPointer(ofType: Float.self) { values in
                    count += values.reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
                }
            case .double:
                array.withUnsafeBufferPointer(ofType: Double.self) { values in
                    count += values.reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
                }
            default:
                continue
            }
        }
        return count
    }

    /// One mask token of one prompt set of `lowResMasks` (B x 4 x 256 x 256) as row-major values.
    public static func maskToken(_ lowResMasks: MLMultiArray, token: Int, promptSet: Int = 0) -> [Float] {
        let side = MaskPostprocessing.lowResSize
        let strides = lowResMasks.strides.map(\.intValue)
        var out = [Float](repeating: 0, count: side * side)
        guard lowResMasks.dataType == .float32 else {
            for row in 0..<side {
                for column in 0..<side {
                    let index = [promptSet, token, row, column].map { NSNumber(value: $0) }
                    out[row * side + column] = lowResMasks[index].floatValue
                }
            }
            return out
        }
        lowResMasks.withUnsafeBufferPointer(ofType: Float.self) { values in
            let base = promptSet * strides[0] + token * strides[1]
            for row in 0..<side {
                for column in 0..<side {
                    out[row * side + column] = values[base + row * strides[2] + column * strides[3]]
                }
            }
        }
        return out
    }

    /// Every value in row-major order of the array's shape, whatever its strides (Core ML may pad rows of
    /// an output): float32 read through its strides, other types element by element.
    public static func rowMajor(_ array: MLMultiArray) -> [Float] {
        let shape = array.shape.map(\.intValue)
        let strides = array.strides.map(\.intValue)
        var indices = [[Int]]()
        indices.reserveCapacity(array.count)
        var index = [Int](repeating: 0, count: shape.count)
        for _ in 0..<array.count {
            indices.append(index)
            var axis = shape.count - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < shape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
        guard array.dataType == .float32 else {
            return indices.map { array[$0.map { NSNumber(value: $0) }].floatValue }
        }
        return array.withUnsafeBufferPointer(ofType: Float.self) { values in
            indices.map { values[zip($0, strides).reduce(0) { $0 + $1.0 * $1.1 }] }
        }
    }

    public static func floats(_ array: MLMultiArray) -> [Float] {
        (0..<array.count).map { array[$0].floatValue }
    }
}
#endif
