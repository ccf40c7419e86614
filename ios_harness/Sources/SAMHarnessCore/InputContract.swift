#if canImport(CoreGraphics)
import CoreGraphics  // elsewhere Foundation defines CGPoint, CGRect, CGFloat
#endif
import Foundation

/// The input contract a samexport package states in its metadata (`com.samexport.contract`, and
/// `com.samexport.token_counts` on decoders): how an app turns a photo and taps into model inputs.
public struct SAMInputContract: Equatable, Sendable {
    public enum Family: String, Sendable {
        /// RepViT-SAM, MobileSAM, SAM: longest side to 1024, letterbox, one padding token without a box.
        case sam
        /// EfficientSAM: stretch to 1024x1024, exactly `efficientSAMTokens` tokens.
        case efficientSAM = "efficientsam"
    }

    public static let modelSize = 1024
    public static let efficientSAMTokens = 6

    public let family: Family
    /// Letterbox fill on the 0...255 scale (SAM-style only): the pixel mean, so padding normalizes to zero.
    public let padColor: [Double]?
    public let maskThreshold: Float
    /// Token counts the decoder accepts (its enumerated shapes), ascending.
    public let tokenCounts: [Int]

    public init(family: Family, padColor: [Double]?, maskThreshold: Float = 0, tokenCounts: [Int]) {
        self.family = family
        self.padColor = padColor
        self.maskThreshold = maskThreshold
        self.tokenCounts = tokenCounts.sorted()
    }

    /// From the package metadata: the `com.samexport.contract` JSON and `com.samexport.token_counts`.
    public init(contractJSON: String, tokenCountsJSON: String?) throws {
        struct Stored: Decodable {
            let family: String?
            let pad_color_rgb: [Double]?
            let mask_threshold: Float
        }
        let stored = try JSONDecoder().decode(Stored.self, from: Data(contractJSON.utf8))
        guard let name = stored.family else {
            throw HarnessError.unsupportedInput("the package's contract names no family; convert it again with this samexport")
        }
        guard let family = Family(rawValue: name) else {
            throw HarnessError.unsupportedInput("this app knows the families sam and efficientsam, not \(name); update SAMHarnessKit")
        }
        var counts = [Self.efficientSAMTokens]
        if family == .sam {
            guard let tokenCountsJSON else {
                throw HarnessError.unsupportedInput("a SAM-style decoder's metadata lists its token counts (com.samexport.token_counts)")
            }
            counts = try JSONDecoder().decode([Int].self, from: Data(tokenCountsJSON.utf8))
        }
        self.init(family: family, padColor: stored.pad_color_rgb, maskThreshold: stored.mask_threshold, tokenCounts: counts)
    }

    /// Letterbox fill as 8-bit RGB: the mean rounded (124, 116, 104 for SAM), as `samexport convert` validates.
    public var padColor8Bit: (red: UInt8, green: UInt8, blue: UInt8)? {
        guard let padColor, padColor.count == 3 else { return nil }
        let bytes = padColor.map { UInt8(Swift.max(0, Swift.min(255, $0.rounded()))) }
        return (bytes[0], bytes[1], bytes[2])
    }

    /// The function of a multifunction decoder (`convert --decoder-shapes multifunction`, iOS 18) that
    /// takes `batch` prompt sets of `tokens` tokens; set it as `MLModelConfiguration.functionName`.
    public static func decoderFunction(tokens: Int, batch: Int = 1) -> String {
        batch == 1 ? "points_\(tokens)" : "points_\(tokens)_batch_\(batch)"
    }

    public func geometry(width: Int, height: Int) -> ImageGeometry {
        ImageGeometry(family: family, width: width, height: height)
    }

    /// The decoder's packed `points` rows (x, y, label) for `prompt`, padded to a supported token count.
    public func tokens(for prompt: Prompt, geometry: ImageGeometry) throws -> [PromptToken] {
        var tokens = prompt.clicks.map { PromptToken(point: geometry.toModel($0.location), label: $0.positive ? 1 : 0) }
        if let box = prompt.box {
            tokens.append(PromptToken(point: geometry.toModel(CGPoint(x: box.minX, y: box.minY)), label: 2))
            tokens.append(PromptToken(point: geometry.toModel(CGPoint(x: box.maxX, y: box.maxY)), label: 3))
        }
        switch family {
        case .sam:
            if prompt.box == nil {
                // The official ONNX layout: one (0, 0) padding token when there is no box, after the clicks.
                tokens.append(.samPadding)
            }
            guard let count = tokenCounts.first(where: { $0 >= tokens.count }) else {
                throw HarnessError.unsupportedInput("\(tokens.count) prompt tokens; this decoder takes at most "
                                                    + "\(tokenCounts.last ?? 0) (convert with a larger --points)")
            }
            // Further -1 tokens only where the exact count is not an enumerated shape.
            return tokens + Array(repeating: .samPadding, count: count - tokens.count)
        case .efficientSAM:
            guard !tokens.isEmpty else {
                throw HarnessError.unsupportedInput("EfficientSAM needs at least one point or a box")
            }
            let kept = Array(tokens.prefix(Self.efficientSAMTokens))
            return kept + Array(repeating: .efficientSAMPadding, count: Self.efficientSAMTokens - kept.count)
        }
    }
}

/// Where the original image lies in the 1024x1024 model input.
public struct ImageGeometry: Equatable, Sendable {
    public let family: SAMInputContract.Family
    public let width: Int
    public let height: Int
    /// Size of the image inside the model input (SAM-style: the letterboxed area, top-left).
    public let resizedWidth: Int
    public let resizedHeight: Int

    public init(family: SAMInputContract.Family, width: Int, height: Int) {
        precondition(width > 0 && height > 0, "an image has a positive size")
        self.family = family
        self.width = width
        self.height = height
        let size = SAMInputContract.modelSize
        switch family {
        case .sam:
            // samexport.transforms.longest_side_shape: scale the longest side to 1024, round half up.
            let scale = Double(size) / Double(Swift.max(width, height))
            resizedWidth = Int(Double(width) * scale + 0.5)
            resizedHeight = Int(Double(height) * scale + 0.5)
        case .efficientSAM:
            resizedWidth = size
            resizedHeight = size
        }
    }

    /// A point in original pixels -> the model frame.
    public func toModel(_ point: CGPoint) -> CGPoint {
        let size = Double(SAMInputContract.modelSize)
        switch family {
        case .sam:
            return CGPoint(x: point.x * Double(resizedWidth) / Double(width),
                           y: point.y * Double(resizedHeight) / Double(height))
        case .efficientSAM:
            // The official EfficientSAM maps negative coordinates (its padding) to -1.
            return CGPoint(x: point.x >= 0 ? point.x * size / Double(width) : -1,
                           y: point.y >= 0 ? point.y * size / Double(height) : -1)
        }
    }

    /// Where to draw the image on the 1024x1024 canvas, in canvas pixels with the origin top-left.
    public var drawRect: CGRect {
        CGRect(x: 0, y: 0, width: resizedWidth, height: resizedHeight)
    }
}

public struct Click: Equatable, Sendable {
    public var location: CGPoint
    public var positive: Bool

    public init(location: CGPoint, positive: Bool) {
        self.location = location
        self.positive = positive
    }
}

/// Taps and an optional dragged box, in original image pixels.
public struct Prompt: Equatable, Sendable {
    public var clicks: [Click]
    public var box: CGRect?

    public init(clicks: [Click] = [], box: CGRect? = nil) {
        self.clicks = clicks
        self.box = box
    }

    public var isEmpty: Bool { clicks.isEmpty && box == nil }
}

public struct PromptToken: Equatable, Sendable {
    public var x: Float
    public var y: Float
    public var label: Float

    public init(x: Float, y: Float, label: Float) {
        self.x = x
        self.y = y
        self.label = label
    }

    init(point: CGPoint, label: Float) {
        self.init(x: Float(point.x), y: Float(point.y), label: label)
    }

    public static let samPadding = PromptToken(x: 0, y: 0, label: -1)
    public static let efficientSAMPadding = PromptToken(x: -1, y: -1, label: -1)
}
