#if canImport(CoreGraphics)
import CoreGraphics  // elsewhere Foundation defines CGPoint, CGRect, CGFloat
#endif
import XCTest
@testable import SAMHarnessCore

/// Expected values come from samexport.transforms (the official pipelines).
final class InputContractTests: XCTestCase {
    let sam = SAMInputContract(family: .sam, padColor: [123.675, 116.28, 103.53], tokenCounts: [2, 3, 4, 5, 6, 8, 9, 16, 17])
    let efficient = SAMInputContract(family: .efficientSAM, padColor: nil, tokenCounts: [6])

    func testLongestSideRoundsHalfUp() {
        let cases: [((Int, Int), (Int, Int))] = [((640, 480), (1024, 768)), ((333, 1000), (341, 1024)),
                                                 ((1000, 333), (1024, 341)), ((1024, 1024), (1024, 1024)),
                                                 ((3, 1), (1024, 341)), ((701, 700), (1024, 1023))]
        for ((width, height), (resizedWidth, resizedHeight)) in cases {
            let geometry = sam.geometry(width: width, height: height)
            XCTAssertEqual(geometry.resizedWidth, resizedWidth, "\(width)x\(height)")
            XCTAssertEqual(geometry.resizedHeight, resizedHeight, "\(width)x\(height)")
        }
        XCTAssertEqual(efficient.geometry(width: 640, height: 480).drawRect, CGRect(x: 0, y: 0, width: 1024, height: 1024))
    }

    func testCoordinatesIntoTheModelFrame() {
        let point = CGPoint(x: 100, y: 200)
        XCTAssertEqual(sam.geometry(width: 640, height: 480).toModel(point), CGPoint(x: 160, y: 320))
        let stretched = efficient.geometry(width: 640, height: 480)
        XCTAssertEqual(stretched.toModel(point).x, 160, accuracy: 1e-9)
        XCTAssertEqual(stretched.toModel(point).y, 426.6666666, accuracy: 1e-6)
        XCTAssertEqual(stretched.toModel(CGPoint(x: -5, y: 3)).x, -1)
    }

    func testPadColorIsTheRoundedMean() throws {
        let color = try XCTUnwrap(sam.padColor8Bit)
        XCTAssertEqual([color.red, color.green, color.blue], [124, 116, 104])
        XCTAssertNil(efficient.padColor8Bit)
    }

    func testSAMClickGetsOnePaddingToken() throws {
        let geometry = sam.geometry(width: 640, height: 480)
        let tokens = try sam.tokens(for: Prompt(clicks: [Click(location: CGPoint(x: 100, y: 200), positive: true)]),
                                    geometry: geometry)
        XCTAssertEqual(tokens, [PromptToken(x: 160, y: 320, label: 1), .samPadding])
    }

    func testSAMBoxBecomesCornersWithLabels2And3() throws {
        let geometry = sam.geometry(width: 640, height: 480)
        let prompt = Prompt(clicks: [Click(location: CGPoint(x: 10, y: 20), positive: false)],
                            box: CGRect(x: 50, y: 60, width: 100, height: 200))
        let tokens = try sam.tokens(for: prompt, geometry: geometry)
        XCTAssertEqual(tokens, [PromptToken(x: 16, y: 32, label: 0), PromptToken(x: 80, y: 96, label: 2),
                                PromptToken(x: 240, y: 416, label: 3)])
    }

    func testSAMPadsToTheNextEnumeratedCount() throws {
        let geometry = sam.geometry(width: 1024, height: 1024)
        let clicks = (0..<6).map { Click(location: CGPoint(x: $0 * 10, y: 5), positive: true) }
        let tokens = try sam.tokens(for: Prompt(clicks: clicks), geometry: geometry)  // 7 tokens -> 8
        XCTAssertEqual(tokens.count, 8)
        XCTAssertEqual(Array(tokens.suffix(2)), [.samPadding, .samPadding])
        let tooMany = Prompt(clicks: (0..<17).map { _ in Click(location: .zero, positive: true) })
        XCTAssertThrowsError(try sam.tokens(for: tooMany, geometry: geometry))
    }

    func testEfficientSAMAlwaysSixTokens() throws {
        let geometry = efficient.geometry(width: 1024, height: 1024)
        let one = try efficient.tokens(for: Prompt(clicks: [Click(location: CGPoint(x: 7, y: 9), positive: true)]),
                                       geometry: geometry)
        XCTAssertEqual(one, [PromptToken(x: 7, y: 9, label: 1)] + Array(repeating: .efficientSAMPadding, count: 5))
        let eight = Prompt(clicks: (0..<8).map { Click(location: CGPoint(x: $0, y: 0), positive: true) })
        XCTAssertEqual(try efficient.tokens(for: eight, geometry: geometry).count, 6)
        XCTAssertThrowsError(try efficient.tokens(for: Prompt(), geometry: geometry))
    }

    func testContractFromPackageMetadata() throws {
        let json = #"{"family": "sam", "pad_color_rgb": [123.675, 116.28, 103.53], "mask_threshold": 0.0, "pixel_scale": "0..255"}"#
        let contract = try SAMInputContract(contractJSON: json, tokenCountsJSON: "[3, 2, 9, 8]")
        XCTAssertEqual(contract.family, .sam)
        XCTAssertEqual(contract.tokenCounts, [2, 3, 8, 9])
        let efficientJSON = #"{"family": "efficientsam", "pad_color_rgb": null, "mask_threshold": 0.0}"#
        XCTAssertEqual(try SAMInputContract(contractJSON: efficientJSON, tokenCountsJSON: nil).family, .efficientSAM)
        XCTAssertThrowsError(try SAMInputContract(contractJSON: json, tokenCountsJSON: nil))
        // The family is read, never inferred: no family field, or one this app does not know, is an error.
        XCTAssertThrowsError(try SAMInputContract(contractJSON: #"{"pad_color_rgb": null, "mask_threshold": 0.0}"#, tokenCountsJSON: nil))
        XCTAssertThrowsError(try SAMInputContract(contractJSON: #"{"family": "rapsam", "pad_color_rgb": null, "mask_threshold": 0.0}"#, tokenCountsJSON: nil))
    }
}
