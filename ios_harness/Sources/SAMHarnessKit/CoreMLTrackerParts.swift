// Apple platforms only: `swift build` on Linux compiles the platform-neutral SAMHarnessCore.
#if canImport(CoreML) && canImport(CoreGraphics)
import CoreGraphics
import CoreML
import Foundation
import SAMHarnessCore

/// EdgeTAM's five Core ML packages (`samexport convert --encoder edgetam --target coreml`) as the parts
/// `MemoryTracker` runs: the encoder on a frame drawn to the 1024 x 1024 canvas (stretched, as SAM 2's video
/// loader resizes it), every other part on float32 arrays. The memory bank's sizes are read from the packages'
/// input shapes (`trackerConfig`).
public final class CoreMLTrackerParts: TrackerPartRunner {
    public static let parts = ["encoder", "prompt_decoder", "track_decoder", "memory_attention", "memory_encoder"]
    private let models: [String: MLModel]
    private let frame: (Int) throws -> CGImage

    /// `models`: part -> its loaded package; `frame(index)`: a frame of the clip, upright.
    public init(models: [String: MLModel], frame: @escaping (Int) throws -> CGImage) throws {
        for part in Self.parts where models[part] == nil {
            throw HarnessError.missingModel("no \(part) package; convert EdgeTAM with samexport convert --encoder edgetam --target coreml")
        }
        self.models = models
        self.frame = frame
    }

    /// The packages compiled into `bundle` as Xcode compiles `EdgeTAMEncoder.mlpackage`, ... (named
    /// `prefix` + the part in upper camel case).
    public static func bundled(in bundle: Bundle = .main, prefix: String = "EdgeTAM",
                               configuration: MLModelConfiguration = MLModelConfiguration()) throws -> [String: MLModel] {
        var models = [String: MLModel]()
        for part in parts {
            let name = prefix + part.split(separator: "_").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
            guard let url = bundle.url(forResource: name, withExtension: "mlmodelc") else {
                throw HarnessError.missingModel("\(name).mlmodelc is not in the app bundle; add \(name).mlpackage to the target")
            }
            models[part] = try MLModel(contentsOf: url, configuration: configuration)
        }
        return models
    }

    /// The prompt decoder takes one packed `points` input (as samexport's Core ML packages do).
    public var packedPrompts: Bool {
        models["prompt_decoder"]?.modelDescription.inputDescriptionsByName["points"] != nil
    }

    /// The tracker's sizes as the packages fix them: memory slots (`base`'s conditioning slots, the rest
    /// recent frames) and tokens, temporal rows, pointer slots, the low-res mask side (the predictor's options
    /// stay `base`'s).
    public func trackerConfig(base: MemoryTrackerConfig = MemoryTrackerConfig()) throws -> MemoryTrackerConfig {
        func shape(_ part: String, _ name: String) throws -> [Int] {
            guard let constraint = models[part]?.modelDescription.inputDescriptionsByName[name]?.multiArrayConstraint else {
                throw HarnessError.unsupportedInput("the \(part) package has no \(name) array input")
            }
            return constraint.shape.map(\.intValue)
        }
        var config = base
        let memory = try shape("memory_attention", "memory")
        let temporal = try shape("memory_attention", "memoryTemporal")
        let pointers = try shape("memory_attention", "objectPointers")
        config.numMaskmem = temporal[1]
        config.recentFrames = memory[0] - config.condSlots
        config.maxObjectPointers = pointers[0] - config.condSlots + 1
        config.memoryTokens = memory[1]
        config.memoryChannels = memory[2]
        config.pointerDim = pointers[1]
        config.maskSize = try shape("memory_encoder", "maskLogits")[3]
        return config
    }

    public func encode(frame index: Int) throws -> [String: TrackerTensor] {
        guard let model = models["encoder"] else { throw HarnessError.missingModel("no encoder package") }
        let picture = try frame(index)
        let input: MLFeatureValue
        if let constraint = model.modelDescription.inputDescriptionsByName["image"]?.imageConstraint {
            input = MLFeatureValue(pixelBuffer: try ImageCanvas.stretched(picture, width: constraint.pixelsWide,
                                                                          height: constraint.pixelsHigh))
        } else {
            throw HarnessError.unsupportedInput("the encoder package takes no image input; convert it with --image-input image")
        }
        return try outputs(of: model.prediction(from: MLDictionaryFeatureProvider(dictionary: ["image": input])))
    }

    public func run(part: String, inputs: [String: TrackerTensor]) throws -> [String: TrackerTensor] {
        guard let model = models[part] else { throw HarnessError.missingModel("no \(part) package") }
        var features = [String: MLFeatureValue]()
        for (name, tensor) in inputs {
            let array = try MLMultiArray(shape: tensor.shape.map { NSNumber(value: $0) }, dataType: .float32)
            let pointer = array.dataPointer.bindMemory(to: Float.self, capacity: tensor.values.count)
            tensor.values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: $0.count) }
            features[name] = MLFeatureValue(multiArray: array)
        }
        return try outputs(of: model.prediction(from: MLDictionaryFeatureProvider(dictionary: features)))
    }

    private func outputs(of provider: MLFeatureProvider) throws -> [String: TrackerTensor] {
        var out = [String: TrackerTensor]()
        for name in provider.featureNames {
            guard let array = provider.featureValue(for: name)?.multiArrayValue else { continue }
            out[name] = TrackerTensor(shape: array.shape.map(\.intValue), values: ModelInputs.rowMajor(array))
        }
        return out
    }
}
#endif
