// Apple platforms only: `swift build` on Linux compiles the platform-neutral SAMHarnessCore.
#if canImport(CoreVideo) && canImport(CoreGraphics)
import CoreGraphics
import CoreVideo
import Foundation
import SAMHarnessCore

/// The 1024x1024 BGRA pixel buffers an encoder's `image` input takes.
public enum ImageCanvas {
    /// `image` drawn as the contract says: SAM-style at the top left, longest side 1024, on the
    /// rounded mean colour; EfficientSAM stretched to the whole canvas. Core Graphics' high-quality
    /// resampling stands in for Pillow's antialiased bilinear resize (sub-1% differences in pixels).
    public static func pixelBuffer(drawing image: CGImage, contract: SAMInputContract) throws -> CVPixelBuffer {
        let size = SAMInputContract.modelSize
        let buffer = try makeBuffer(width: size, height: size)
        let geometry = contract.geometry(width: image.width, height: image.height)
        try withContext(buffer) { context in
            if let fill = contract.padColor8Bit {
                context.setFillColor(red: CGFloat(fill.red) / 255, green: CGFloat(fill.green) / 255,
                                     blue: CGFloat(fill.blue) / 255, alpha: 1)
                context.fill(CGRect(x: 0, y: 0, width: size, height: size))
            }
            context.interpolationQuality = .high
            // Core Graphics puts the origin bottom-left: the top-left area starts at size - height.
            let rect = geometry.drawRect
            context.draw(image, in: CGRect(x: 0, y: CGFloat(size) - rect.height, width: rect.width, height: rect.height))
        }
        return buffer
    }

    /// `image` stretched to the whole width x height canvas, aspect ratio not kept (SAM 2's video frames).
    public static func stretched(_ image: CGImage, width: Int, height: Int) throws -> CVPixelBuffer {
        let buffer = try makeBuffer(width: width, height: height)
        try withContext(buffer) { context in
            context.interpolationQuality = .high
            context.draw(image, in: CGRect(x: 0, y: 0, width: width, height: height))
        }
        return buffer
    }

    /// Seeded noise for benchmarks (latency does not depend on the pixels).
    public static func noise(width: Int, height: Int, seed: UInt64 = 0) throws -> CVPixelBuffer {
        let buffer = try makeBuffer(width: width, height: height)
        var generator = SplitMix64(seed: seed)
        CVPixelBufferLockBaseAddress(buffer, [])
        defer { CVPixelBufferUnlockBaseAddress(buffer, []) }
        guard let base = CVPixelBufferGetBaseAddress(buffer) else {
            throw HarnessError.unsupportedInput("cannot write a \(width)x\(height) pixel buffer")
        }
        let bytesPerRow = CVPixelBufferGetBytesPerRow(buffer)
        let pixels = base.bindMemory(to: UInt8.self, capacity: bytesPerRow * height)
        for row in 0..<height {
            for column in 0..<width {
                let offset = row * bytesPerRow + column * 4
                let value = generator.next()
                pixels[offset] = UInt8(truncatingIfNeeded: value)
                pixels[offset + 1] = UInt8(truncatingIfNeeded: value >> 8)
                pixels[offset + 2] = UInt8(truncatingIfNeeded: value >> 16)
                pixels[offset + 3] = 255
            }
        }
        return buffer
    }

    static func makeBuffer(width: Int, height: Int) throws -> CVPixelBuffer {
        let attributes: [CFString: Any] = [kCVPixelBufferCGImageCompatibilityKey: true,
                                           kCVPixelBufferCGBitmapContextCompatibilityKey: true,
                                           kCVPixelBufferIOSurfacePropertiesKey: [String: Any]()]
        var buffer: CVPixelBuffer?
        let status = CVPixelBufferCreate(kCFAllocatorDefault, width, height, kCVPixelFormatType_32BGRA,
                                         attributes as CFDictionary, &buffer)
        guard status == kCVReturnSuccess, let buffer else {
            throw HarnessError.unsupportedInput("CVPixelBufferCreate failed (\(status)) for \(width)x\(height) BGRA")
        }
        return buffer
    }

    static func withContext(_ buffer: CVPixelBuffer, _ draw: (CGContext) throws -> Void) throws {
        CVPixelBufferLockBaseAddress(buffer, [])
        defer { CVPixelBufferUnlockBaseAddress(buffer, []) }
        let bitmapInfo = CGImageAlphaInfo.premultipliedFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue
        guard let context = CGContext(data: CVPixelBufferGetBaseAddress(buffer),
                                      width: CVPixelBufferGetWidth(buffer), height: CVPixelBufferGetHeight(buffer),
                                      bitsPerComponent: 8, bytesPerRow: CVPixelBufferGetBytesPerRow(buffer),
                                      space: CGColorSpace(name: CGColorSpace.sRGB) ?? CGColorSpaceCreateDeviceRGB(),
                                      bitmapInfo: bitmapInfo) else {
            throw HarnessError.unsupportedInput("cannot draw into a BGRA pixel buffer")
        }
        try draw(context)
    }
}

/// A small seeded generator, so every run feeds the same inputs.
public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
#endif
