import Foundation
import XCTest
@testable import SAMHarnessCore

/// EverythingMode against Tests/Fixtures/everything.json, which tests/harness_golden.py writes with
/// samexport.amg (the official SamAutomaticMaskGenerator semantics, proven against the official outputs).
final class EverythingModeTests: XCTestCase {
    private func golden() throws -> [String: Any] {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "everything", withExtension: "json",
                                                  subdirectory: "Fixtures"))
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    private func section(_ name: String) throws -> [String: Any] {
        try XCTUnwrap(try golden()[name] as? [String: Any])
    }

    func testPointGridsMatchPython() throws {
        for entry in try XCTUnwrap(try golden()["grids"] as? [[String: Any]]) {
            let perSide = try XCTUnwrap(entry["per_side"] as? Int)
            let expected = try XCTUnwrap(entry["points"] as? [[NSNumber]])
            let grid = EverythingMode.pointGrid(perSide: perSide)
            XCTAssertEqual(grid.count, expected.count)
            for (point, row) in zip(grid, expected) {
                XCTAssertEqual(point.x, row[0].doubleValue, accuracy: 1e-12)
                XCTAssertEqual(point.y, row[1].doubleValue, accuracy: 1e-12)
            }
        }
    }

    func testCropBoxesMatchPython() throws {
        for entry in try XCTUnwrap(try golden()["crops"] as? [[String: Any]]) {
            let crops = EverythingMode.cropBoxes(width: try XCTUnwrap(entry["width"] as? Int),
                                                 height: try XCTUnwrap(entry["height"] as? Int),
                                                 layers: try XCTUnwrap(entry["layers"] as? Int), overlapRatio: 512.0 / 1500)
            XCTAssertEqual(crops.map(\.box), try XCTUnwrap(entry["boxes"] as? [[Int]]))
            XCTAssertEqual(crops.map(\.layer), try XCTUnwrap(entry["layer"] as? [Int]))
        }
    }

    func testStabilityAndBoxesMatchPyTorch() throws {
        let masks = try section("masks")
        let width = try XCTUnwrap(masks["width"] as? Int)
        let height = try XCTUnwrap(masks["height"] as? Int)
        let logits = try XCTUnwrap(masks["logits"] as? [[NSNumber]]).map { $0.map(\.floatValue) }
        let stability = try XCTUnwrap(masks["stability"] as? [Any])
        let boxes = try XCTUnwrap(masks["boxes"] as? [[Int]])
        for (index, values) in logits.enumerated() {
            let score = EverythingMode.stabilityScore(values)
            if let expected = stability[index] as? NSNumber {
                XCTAssertEqual(score, expected.floatValue, accuracy: 1e-7)
            } else {
                XCTAssertTrue(score.isNaN, "an empty union gives NaN (null in the JSON)")
            }
            let mask = MaskPostprocessing.binarize(values)
            XCTAssertEqual(EverythingMode.maskBox(mask, width: width, height: height), boxes[index])
        }
    }

    func testBoxNMSMatchesTorchvisionSemantics() throws {
        let nms = try section("nms")
        let boxes = try XCTUnwrap(nms["boxes"] as? [[NSNumber]]).map { $0.map(\.floatValue) }
        let scores = try XCTUnwrap(nms["scores"] as? [NSNumber]).map(\.floatValue)
        for entry in try XCTUnwrap(nms["cases"] as? [[String: Any]]) {
            let threshold = try XCTUnwrap(entry["threshold"] as? NSNumber).floatValue
            XCTAssertEqual(EverythingMode.boxNMS(boxes, scores: scores, iouThreshold: threshold),
                           try XCTUnwrap(entry["keep"] as? [Int]), "threshold \(threshold)")
        }
    }

    func testCropEdgeRuleMatchesPython() throws {
        let edge = try section("crop_edge")
        let boxes = try XCTUnwrap(edge["boxes"] as? [[Int]])
        for entry in try XCTUnwrap(edge["cases"] as? [[String: Any]]) {
            let cropBox = try XCTUnwrap(entry["crop_box"] as? [Int])
            let imageBox = try XCTUnwrap(entry["image_box"] as? [Int])
            XCTAssertEqual(boxes.map { EverythingMode.nearCropEdge($0, cropBox: cropBox, imageBox: imageBox) },
                           try XCTUnwrap(entry["near"] as? [Bool]), "crop \(cropBox)")
        }
    }

    func testPromptSetsSplitIntoTheDecoderBatchSizes() throws {
        for entry in try XCTUnwrap(try golden()["batches"] as? [[String: Any]]) {
            let calls = try XCTUnwrap(entry["calls"] as? [[String: Int]]).map {
                EverythingMode.Batch(start: $0["start"]!, count: $0["count"]!, padded: $0["padded"]!)
            }
            XCTAssertEqual(EverythingMode.batches(count: try XCTUnwrap(entry["count"] as? Int),
                                                  batchSizes: try XCTUnwrap(entry["batch_sizes"] as? [Int])), calls)
        }
    }
}
