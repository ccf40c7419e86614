import CoreGraphics
import CoreML
import SAMHarnessKit

/// What an app needs around the two generated classes: encode once per photo, decode per prompt.
/// `RepViTSAMEncoder` and `RepViTSAMDecoder` are the classes Xcode generates from the packages
/// `samexport convert --encoder repvit --target coreml` writes.
final class Segmenter {
    struct Embedding {
        let values: MLMultiArray
        let geometry: ImageGeometry
    }

    struct Mask {
        let width: Int
        let height: Int
        let pixels: [Bool]
        let score: Float
    }

    private let encoder: RepViTSAMEncoder
    private let decoder: RepViTSAMDecoder
    let contract: SAMInputContract

    init(computeUnits: MLComputeUnits = .all) throws {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits
        encoder = try RepViTSAMEncoder(configuration: configuration)
        decoder = try RepViTSAMDecoder(configuration: configuration)
        let metadata = decoder.model.modelDescription.metadata[.creatorDefinedKey] as? [String: String] ?? [:]
        guard let contractJSON = metadata["com.samexport.contract"] else {
            throw HarnessError.unsupportedInput("RepViTSAMDecoder has no com.samexport.contract metadata; "
                                                + "use a package written by samexport convert")
        }
        contract = try SAMInputContract(contractJSON: contractJSON, tokenCountsJSON: metadata["com.samexport.token_counts"])
    }

    /// The slow half (the encoder), once per photo.
    func embed(_ image: CGImage) throws -> Embedding {
        let canvas = try ImageCanvas.pixelBuffer(drawing: image, contract: contract)
        let output = try encoder.prediction(image: canvas)
        return Embedding(values: output.imageEmbeddings, geometry: contract.geometry(width: image.width, height: image.height))
    }

    /// The fast half (the decoder), on every tap or drag.
    func mask(for prompt: Prompt, in embedding: Embedding) throws -> Mask {
        let tokens = try contract.tokens(for: prompt, geometry: embedding.geometry)
        let output = try decoder.prediction(imageEmbeddings: embedding.values,
                                            points: try ModelInputs.packedPoints(tokens),
                                            maskInput: try ModelInputs.zeros([1, 1, 256, 256]),
                                            hasMaskInput: try ModelInputs.zeros([1]))
        let scores = ModelInputs.floats(output.iouScores)
        let token = MaskPostprocessing.selectToken(iouScores: scores, multimask: MaskPostprocessing.wantsMultimask(prompt))
        let logits = MaskPostprocessing.upscale(ModelInputs.maskToken(output.lowResMasks, token: token),
                                                geometry: embedding.geometry)
        return Mask(width: embedding.geometry.width, height: embedding.geometry.height,
                    pixels: MaskPostprocessing.binarize(logits, threshold: contract.maskThreshold), score: scores[token])
    }
}

extension Segmenter.Mask {
    /// A translucent overlay of the mask at the image's size.
    func overlay(red: UInt8 = 30, green: UInt8 = 144, blue: UInt8 = 255, alpha: UInt8 = 140) -> CGImage? {
        var rgba = [UInt8](repeating: 0, count: width * height * 4)
        for (index, inside) in pixels.enumerated() where inside {
            // Premultiplied alpha.
            rgba[4 * index] = UInt8(Int(red) * Int(alpha) / 255)
            rgba[4 * index + 1] = UInt8(Int(green) * Int(alpha) / 255)
            rgba[4 * index + 2] = UInt8(Int(blue) * Int(alpha) / 255)
            rgba[4 * index + 3] = alpha
        }
        guard let provider = CGDataProvider(data: Data(rgba) as CFData) else { return nil }
        return CGImage(width: width, height: height, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: width * 4,
                       space: CGColorSpaceCreateDeviceRGB(),
                       bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.premultipliedLast.rawValue),
                       provider: provider, decode: nil, shouldInterpolate: false, intent: .defaultIntent)
    }
}
