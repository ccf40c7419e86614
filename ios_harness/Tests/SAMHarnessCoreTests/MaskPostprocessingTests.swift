#if canImport(CoreGraphics)
import CoreGraphics  // elsewhere Foundation defines CGPoint, CGRect, CGFloat
#endif
import XCTest
@testable import SAMHarnessCore

/// Expected values are torch.nn.functional.interpolate and samexport.transforms on the same input.
final class MaskPostprocessingTests: XCTestCase {
    /// x = arange(12).reshape(3, 4); x * x * 0.1 - 2
    let input: [Float] = (0..<12).map { Float($0) * Float($0) * 0.1 - 2 }

    func testBilinearMatchesPyTorch() {
        let up = MaskPostprocessing.resizeBilinear(input, width: 4, height: 3, toWidth: 7, toHeight: 5)
        let expected: [Float] = [-2.0, -1.96429, -1.90714, -1.75, -1.56429, -1.27857, -1.1,
                                 -1.36, -1.21, -0.97, -0.63, -0.26143, 0.20714, 0.5,
                                 -0.4, -0.07857, 0.43571, 1.05, 1.69286, 2.43571, 2.9,
                                 2.48, 2.97286, 3.76143, 4.65, 5.56714, 6.58429, 7.22,
                                 4.4, 5.00714, 5.97857, 7.05, 8.15, 9.35, 10.1]
        assertClose(up, expected, tolerance: 1e-4)
        let down = MaskPostprocessing.resizeBilinear(input, width: 4, height: 3, toWidth: 3, toHeight: 2)
        assertClose(down, [-1.55, -1.05, -0.21667, 3.45, 5.55, 7.98333], tolerance: 1e-4)
    }

    func testBicubicMatchesPyTorch() {
        let up = MaskPostprocessing.resizeBicubic(input, width: 4, height: 3, toWidth: 7, toHeight: 5)
        let expected: [Float] = [-2.1559, -2.15942, -2.14204, -2.0563, -1.87268, -1.61448, -1.44201,
                                 -1.7598, -1.63858, -1.41772, -1.1331, -0.75059, -0.28891, 0.00829,
                                 -0.48929, -0.16098, 0.39769, 1.0125, 1.72519, 2.52468, 3.02898,
                                 2.50922, 3.04462, 3.94111, 4.8861, 5.92898, 7.06628, 7.77767,
                                 4.68452, 5.34466, 6.44463, 7.5885, 8.83026, 10.17104, 11.00718]
        assertClose(up, expected, tolerance: 1e-4)
    }

    /// low = sin(arange(256 * 256) * 0.001) * 3, post-processed for a 5x3 (W x H) image.
    func testUpscalingMatchesTheOfficialPostprocessing() {
        let low: [Float] = (0..<(256 * 256)).map { sin(Float($0) * 0.001) * 3 }
        let sam = MaskPostprocessing.upscale(low, geometry: ImageGeometry(family: .sam, width: 5, height: 3))
        assertClose(sam, [0.4853, 0.6355, 0.7841, 0.9307, 1.0748, 1.91, 2.0247, 2.1341, 2.2378, 2.3357,
                          2.8027, 2.8503, 2.8904, 2.9229, 2.9477], tolerance: 2e-3)
        let efficient = MaskPostprocessing.upscale(low, geometry: ImageGeometry(family: .efficientSAM, width: 5, height: 3))
        assertClose(efficient, [-2.9634, -2.9847, -2.9981, -3.0037, -3.0014, 2.8574, 2.9024, 2.9397, 2.9694, 2.9913,
                                -2.6659, -2.7333, -2.7934, -2.8462, -2.8916], tolerance: 2e-3)
    }

    func testThresholdAndSelection() {
        XCTAssertEqual(MaskPostprocessing.binarize([-0.5, 0, 0.25]), [false, false, true])
        XCTAssertEqual(MaskPostprocessing.selectToken(iouScores: [0.99, 0.2, 0.9, 0.4], multimask: true), 2)
        XCTAssertEqual(MaskPostprocessing.selectToken(iouScores: [0.1, 0.2, 0.9, 0.4], multimask: false), 0)
        XCTAssertTrue(MaskPostprocessing.wantsMultimask(Prompt(clicks: [Click(location: .zero, positive: true)])))
        XCTAssertFalse(MaskPostprocessing.wantsMultimask(Prompt(clicks: [Click(location: .zero, positive: true)],
                                                                box: CGRect(x: 0, y: 0, width: 4, height: 4))))
    }

    func testCropKeepsTheTopLeft() {
        XCTAssertEqual(MaskPostprocessing.crop(input, width: 4, toWidth: 2, toHeight: 2),
                       [input[0], input[1], input[4], input[5]])
    }

    private func assertClose(_ actual: [Float], _ expected: [Float], tolerance: Float,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, file: file, line: line)
        for (index, (a, e)) in zip(actual, expected).enumerated() {
            XCTAssertEqual(a, e, accuracy: tolerance, "value \(index)", file: file, line: line)
        }
    }
}
