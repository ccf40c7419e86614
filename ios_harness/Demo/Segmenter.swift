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
    /// Prompt sets the decoder takes per call (`convert --batch`; [1] unless converted with more).
    let batchSizes: [Int]
    /// `convert --decoder-shapes multifunction`: one static function per prompt shape (iOS 18), each
    /// loaded on first use; otherwise the one enumerated-shape decoder serves every prompt.
    private let multifunction: Bool
    private let computeUnits: MLComputeUnits
    private var functions: [String: RepViTSAMDecoder] = [:]

    init(computeUnits: MLComputeUnits = .all) throws {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits
        self.computeUnits = computeUnits
        encoder = try RepViTSAMEncoder(configuration: configuration)
        decoder = try RepViTSAMDecoder(configuration: configuration)
        let metadata = decoder.model.modelDescription.metadata[.creatorDefinedKey] as? [String: String] ?? [:]
        guard let contractJSON = metadata["com.samexport.contract"] else {
            throw HarnessError.unsupportedInput("RepViTSAMDecoder has no com.samexport.contract metadata; "
                                                + "use a package written by samexport convert")
        }
        contract = try SAMInputContract(contractJSON: contractJSON, tokenCountsJSON: metadata["com.samexport.token_counts"])
        batchSizes = try JSONDecoder().decode([Int].self, from: Data((metadata["com.samexport.batch_sizes"] ?? "[1]").utf8))
        multifunction = metadata["com.samexport.decoder_shapes"] == "multifunction"
    }

    /// The decoder for `batch` prompt sets of `tokens` tokens: the function of that shape in a
    /// multifunction package (loaded once), else the enumerated-shape decoder.
    private func decoder(tokens: Int, batch: Int = 1) throws -> RepViTSAMDecoder {
        guard multifunction else { return decoder }
        let name = SAMInputContract.decoderFunction(tokens: tokens, batch: batch)
        if let loaded = functions[name] { return loaded }
        guard #available(iOS 18.0, macOS 15.0, *) else {
            throw HarnessError.unsupportedInput("RepViTSAMDecoder is a multifunction package; it needs iOS 18 / macOS 15")
        }
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits
        configuration.functionName = name
        let loaded = try RepViTSAMDecoder(configuration: configuration)
        functions[name] = loaded
        return loaded
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
        let output = try decoder(tokens: tokens.count).prediction(imageEmbeddings: embedding.values,
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

extension Segmenter {
    /// Everything mode: a grid of single clicks decoded in the package's batch sizes, then the official
    /// filters (predicted IoU > `iouThreshold` on tokens 1...3, stability >= `stabilityThreshold` on the
    /// upscaled logits) and box NMS. Only IoU survivors are upscaled: the result is the same, the work less.
    func everything(in embedding: Embedding, pointsPerSide: Int = 16, iouThreshold: Float = 0.88,
                    stabilityThreshold: Float = 0.95, nmsThreshold: Float = 0.7) throws -> [Mask] {
        let geometry = embedding.geometry
        let sets = try EverythingMode.pointGrid(perSide: pointsPerSide).map { point in
            let location = CGPoint(x: point.x * Double(geometry.width), y: point.y * Double(geometry.height))
            return try contract.tokens(for: Prompt(clicks: [Click(location: location, positive: true)]), geometry: geometry)
        }
        var masks: [Mask] = []
        var boxes: [[Float]] = []
        for batch in EverythingMode.batches(count: sets.count, batchSizes: batchSizes) {
            let points = try ModelInputs.packedPointBatch(Array(sets[batch.start..<(batch.start + batch.count)]),
                                                          padTo: batch.padded)
            let shaped = try decoder(tokens: sets[batch.start].count, batch: batch.padded)
            let output = try shaped.prediction(imageEmbeddings: embedding.values, points: points,
                                               maskInput: try ModelInputs.zeros([1, 1, 256, 256]),
                                               hasMaskInput: try ModelInputs.zeros([1]))
            let scores = ModelInputs.floats(output.iouScores)
            for set in 0..<batch.count {
                for token in 1...3 where scores[4 * set + token] > iouThreshold {
                    let logits = MaskPostprocessing.upscale(ModelInputs.maskToken(output.lowResMasks, token: token,
                                                                                  promptSet: set), geometry: geometry)
                    guard EverythingMode.stabilityScore(logits, threshold: contract.maskThreshold) >= stabilityThreshold
                    else { continue }
                    let pixels = MaskPostprocessing.binarize(logits, threshold: contract.maskThreshold)
                    masks.append(Mask(width: geometry.width, height: geometry.height, pixels: pixels,
                                      score: scores[4 * set + token]))
                    boxes.append(EverythingMode.maskBox(pixels, width: geometry.width, height: geometry.height).map(Float.init))
                }
            }
        }
        return EverythingMode.boxNMS(boxes, scores: masks.map(\.score), iouThreshold: nmsThreshold).map { masks[$0] }
    }
}

extension Segmenter.Mask {
    /// A translucent overlay of the mask at the image's size.
    func overlay(red: UInt8 = 30, green: UInt8 = 144, blue: UInt8 = 255, alpha: UInt8 = 140) -> CGImage? {
        Self.overlay(of: [self], colors: [(red, green, blue)], alpha: alpha)
    }

    /// Several masks in distinct colours (OverlayPalette's golden-ratio hues), later masks drawn over earlier ones.
    static func overlay(of masks: [Segmenter.Mask], colors: [(UInt8, UInt8, UInt8)]? = nil,
                        alpha: UInt8 = 140) -> CGImage? {
        guard let first = masks.first else { return nil }
        let (width, height) = (first.width, first.height)
        var rgba = [UInt8](repeating: 0, count: width * height * 4)
        for (number, mask) in masks.enumerated() {
            let (red, green, blue) = colors?[number] ?? OverlayPalette.color(number)
            for (index, inside) in mask.pixels.enumerated() where inside {
                // Premultiplied alpha.
                rgba[4 * index] = UInt8(Int(red) * Int(alpha) / 255)
                rgba[4 * index + 1] = UInt8(Int(green) * Int(alpha) / 255)
                rgba[4 * index + 2] = UInt8(Int(blue) * Int(alpha) / 255)
                rgba[4 * index + 3] = alpha
            }
        }
        guard let provider = CGDataProvider(data: Data(rgba) as CFData) else { return nil }
        return CGImage(width: width, height: height, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: width * 4,
                       space: CGColorSpaceCreateDeviceRGB(),
                       bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.premultipliedLast.rawValue),
                       provider: provider, decode: nil, shouldInterpolate: false, intent: .defaultIntent)
    }
}
