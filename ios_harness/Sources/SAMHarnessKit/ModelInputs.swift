// Apple platforms only: `swift build` on Linux compiles the platform-neutral rest of SAMHarnessKit.
#if canImport(CoreML)
import CoreML
import CoreVideo
import Foundation

/// Model inputs built from a package's own description.
public enum ModelInputs {
    /// The decoder's `points` input (1 x N x 3: x, y, label per token).
    public static func packedPoints(_ tokens: [PromptToken]) throws -> MLMultiArray {
        let array = try MLMultiArray(shape: [1, NSNumber(value: tokens.count), 3], dataType: .float32)
        array.withUnsafeMutableBufferPointer(ofType: Float.self) { values, _ in
            for (index, token) in tokens.enumerated() {
                values[3 * index] = token.x
                values[3 * index + 1] = token.y
                values[3 * index + 2] = token.label
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

    /// One mask token of `lowResMasks` (1 x 4 x 256 x 256, float32 as samexport declares it) as
    /// row-major values.
    public static func maskToken(_ lowResMasks: MLMultiArray, token: Int) -> [Float] {
        let side = MaskPostprocessing.lowResSize
        let strides = lowResMasks.strides.map(\.intValue)
        var out = [Float](repeating: 0, count: side * side)
        guard lowResMasks.dataType == .float32 else {
            for row in 0..<side {
                for column in 0..<side {
                    out[row * side + column] = lowResMasks[[0, token, row, column].map { NSNumber(value: $0) }].floatValue
                }
            }
            return out
        }
        lowResMasks.withUnsafeBufferPointer(ofType: Float.self) { values in
            for row in 0..<side {
                for column in 0..<side {
                    out[row * side + column] = values[token * strides[1] + row * strides[2] + column * strides[3]]
                }
            }
        }
        return out
    }

    public static func floats(_ array: MLMultiArray) -> [Float] {
        (0..<array.count).map { array[$0].floatValue }
    }
}
#endif
