#if canImport(CoreGraphics)
import CoreGraphics  // elsewhere Foundation defines CGPoint, CGRect, CGFloat
#endif
import Foundation
import XCTest
@testable import SAMHarnessCore

/// The golden files in Tests/Fixtures, written by Python (tests/harness_golden.py) with samexport's own
/// code: the Swift side must compute the same values. A pytest fails when Python no longer produces
/// exactly these files, so neither side can drift alone.
final class GoldenFixtureTests: XCTestCase {
    private func fixture(_ name: String, _ ext: String = "json") throws -> Any {
        let url = try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: ext, subdirectory: "Fixtures"),
                                "missing fixture \(name).\(ext)")
        return try JSONSerialization.jsonObject(with: Data(contentsOf: url))
    }

    private func cases(_ name: String) throws -> [[String: Any]] {
        let root = try XCTUnwrap(try fixture(name) as? [String: Any])
        return try XCTUnwrap(root["cases"] as? [[String: Any]])
    }

    private func family(_ name: Any?) throws -> SAMInputContract.Family {
        try XCTUnwrap(SAMInputContract.Family(rawValue: try XCTUnwrap(name as? String)))
    }

    private func doubles(_ value: Any?) throws -> [Double] {
        try XCTUnwrap(value as? [NSNumber]).map(\.doubleValue)
    }

    func testContractGeometryMatchesPython() throws {
        for entry in try cases("contract_geometry") {
            let geometry = ImageGeometry(family: try family(entry["family"]), width: try XCTUnwrap(entry["width"] as? Int),
                                         height: try XCTUnwrap(entry["height"] as? Int))
            let resized = try XCTUnwrap(entry["resized"] as? [Int])
            XCTAssertEqual([geometry.resizedWidth, geometry.resizedHeight], resized, "\(entry["width"]!)x\(entry["height"]!)")
            let points = try XCTUnwrap(entry["points"] as? [[NSNumber]])
            let expected = try XCTUnwrap(entry["model_points"] as? [[NSNumber]])
            for (point, model) in zip(points, expected) {
                let mapped = geometry.toModel(CGPoint(x: point[0].doubleValue, y: point[1].doubleValue))
                XCTAssertEqual(Double(mapped.x), model[0].doubleValue, accuracy: 1e-3)
                XCTAssertEqual(Double(mapped.y), model[1].doubleValue, accuracy: 1e-3)
            }
        }
    }

    func testPromptTokensMatchPython() throws {
        for entry in try cases("prompt_tokens") {
            let kind = try family(entry["family"])
            let contract = SAMInputContract(family: kind, padColor: kind == .sam ? [123.675, 116.28, 103.53] : nil,
                                            tokenCounts: try XCTUnwrap(entry["token_counts"] as? [Int]))
            let clicks = try XCTUnwrap(entry["clicks"] as? [[Any]]).map { click in
                Click(location: CGPoint(x: (click[0] as! NSNumber).doubleValue, y: (click[1] as! NSNumber).doubleValue),
                      positive: click[2] as! Bool)
            }
            var box: CGRect?
            if let corners = entry["box"] as? [NSNumber] {
                box = CGRect(x: corners[0].doubleValue, y: corners[1].doubleValue,
                             width: corners[2].doubleValue - corners[0].doubleValue,
                             height: corners[3].doubleValue - corners[1].doubleValue)
            }
            let geometry = contract.geometry(width: try XCTUnwrap(entry["width"] as? Int),
                                             height: try XCTUnwrap(entry["height"] as? Int))
            let tokens = try contract.tokens(for: Prompt(clicks: clicks, box: box), geometry: geometry)
            let expected = try XCTUnwrap(entry["tokens"] as? [[NSNumber]])
            XCTAssertEqual(tokens.count, expected.count, "\(kind) \(clicks.count) clicks, box \(box != nil)")
            XCTAssertEqual(SAMInputContract.decoderFunction(tokens: tokens.count), entry["function"] as? String)
            for (token, row) in zip(tokens, expected) {
                XCTAssertEqual(Double(token.x), row[0].doubleValue, accuracy: 1e-3)
                XCTAssertEqual(Double(token.y), row[1].doubleValue, accuracy: 1e-3)
                XCTAssertEqual(Double(token.label), row[2].doubleValue)
            }
        }
    }

    func testMaskPostprocessingMatchesPyTorch() throws {
        var lowRes = [Float]()
        lowRes.reserveCapacity(256 * 256)
        for row in 0..<256 {
            for column in 0..<256 {
                lowRes.append(Float(sin(0.05 * Double(row)) * cos(0.03 * Double(column)) + 0.001 * Double(row - column)))
            }
        }
        for entry in try cases("mask_postprocessing") {
            let geometry = ImageGeometry(family: try family(entry["family"]), width: try XCTUnwrap(entry["width"] as? Int),
                                         height: try XCTUnwrap(entry["height"] as? Int))
            let logits = MaskPostprocessing.upscale(lowRes, geometry: geometry)
            let expected = try doubles(entry["logits"])
            XCTAssertEqual(logits.count, expected.count)
            let worst = zip(logits, expected).map { abs(Double($0) - $1) }.max() ?? .infinity
            XCTAssertLessThan(worst, 1e-4, "\(geometry.family)")
        }
    }

    /// The same formula inputs as tests/harness_golden.py: class logits favour class 21q mod 133 (query 5:
    /// no object), masks are products of sines.
    func testPanopticFusionMatchesPython() throws {
        let root = try XCTUnwrap(try fixture("panoptic_fusion") as? [String: Any])
        let queries = try XCTUnwrap(root["queries"] as? Int)
        let width = try XCTUnwrap(root["width"] as? Int)
        let height = try XCTUnwrap(root["height"] as? Int)
        var classLogits = [Float]()
        var maskLogits = [Float]()
        for query in 0..<queries {
            let favoured = query == 5 ? 133 : 7 * query * 3 % 133
            for column in 0..<134 {
                let peak = column == favoured ? 8.0 : 0.0
                classLogits.append(Float(peak + 0.01 * sin(Double(query) + 0.1 * Double(column))))
            }
            for row in 0..<height {
                for column in 0..<width {
                    maskLogits.append(Float(sin(0.9 * Double(query) + 0.7 * Double(row))
                                            * cos(0.5 * Double(query) - 0.6 * Double(column)) * 3.0))
                }
            }
        }
        for entry in try cases("panoptic_fusion") {
            let fused = PanopticFusion.fuse(
                classLogits: classLogits, maskLogits: maskLogits, queries: queries, width: width, height: height,
                objectMaskThreshold: Float(try XCTUnwrap(entry["object_mask_threshold"] as? Double)),
                iouThreshold: Float(try XCTUnwrap(entry["iou_threshold"] as? Double)))
            XCTAssertEqual(fused.map.map(Int.init), try XCTUnwrap(entry["map"] as? [Int]))
            let segments = try XCTUnwrap(entry["segments"] as? [[String: Any]])
            XCTAssertEqual(fused.segments.map { Int($0.id) }, segments.compactMap { $0["id"] as? Int })
            XCTAssertEqual(fused.segments.map(\.area), segments.compactMap { $0["area"] as? Int })
        }
    }

    func testVideoTracksMatchPython() throws {
        let root = try XCTUnwrap(try fixture("video_tracks") as? [String: Any])
        let queries = try XCTUnwrap(root["queries"] as? Int)
        let dim = try XCTUnwrap(root["dim"] as? Int)
        let columns = try XCTUnwrap(root["classes"] as? Int) + 1
        let width = try XCTUnwrap(root["width"] as? Int)
        let height = try XCTUnwrap(root["height"] as? Int)
        for (frames, ends) in try XCTUnwrap(root["tube_ends_by_length"] as? [String: [Int]]) {
            XCTAssertEqual(VideoTracks.tubeEnds(frames: try XCTUnwrap(Int(frames))), ends, "\(frames) frames")
        }
        var linker = TubeLinker(queries: queries, dim: dim, columns: columns)
        var masks = [QueryMasks]()
        var start = 0
        for (k, tube) in try XCTUnwrap(root["tubes"] as? [[String: Any]]).enumerated() {
            let order = linker.add(classLogits: try doubles(tube["class_logits"]).map(Float.init),
                                   embeddings: try doubles(tube["query_embeddings"]).map(Float.init))
            XCTAssertEqual(order, try XCTUnwrap(tube["order"] as? [Int]), "tube \(k)")
            let end = try XCTUnwrap(tube["end"] as? Int)
            for t in 0..<(end - start) {
                var logits = [Float]()
                for query in order {
                    for row in 0..<height {
                        for column in 0..<width {
                            logits.append(Float(3.0 * sin(0.9 * Double(query) + 0.7 * Double(row) + 0.3 * Double(t))
                                                * cos(0.5 * Double(query) - 0.6 * Double(column) + 0.2 * Double(k))))
                        }
                    }
                }
                masks.append(QueryMasks(maskLogits: logits, queries: queries, width: width, height: height))
            }
            start = end
        }
        let averaged = linker.classLogits
        for (ours, theirs) in zip(averaged, try doubles(root["averaged_class_logits"])) {
            XCTAssertEqual(Double(ours), theirs, accuracy: 1e-5)
        }
        let found = VideoTracks.candidates(classLogits: averaged, queries: queries, columns: columns,
                                           things: try XCTUnwrap(root["things"] as? Int),
                                           maxInstances: try XCTUnwrap(root["max_instances"] as? Int))
        let expected = try XCTUnwrap(root["instances"] as? [[[String: Any]]])
        XCTAssertEqual(masks.count, expected.count)
        for (frame, summary) in masks.enumerated() {
            let instances = VideoTracks.frameInstances(candidates: found, masks: summary)
            let want = expected[frame]
            XCTAssertEqual(instances.map(\.id), want.compactMap { $0["id"] as? Int }, "frame \(frame)")
            XCTAssertEqual(instances.map(\.query), want.compactMap { $0["query"] as? Int })
            XCTAssertEqual(instances.map(\.label), want.compactMap { $0["label"] as? Int })
            XCTAssertEqual(instances.map(\.area), want.compactMap { $0["area"] as? Int })
            for (instance, entry) in zip(instances, want) {
                XCTAssertEqual(instance.box.map(Double.init), try doubles(entry["box"]))
                XCTAssertEqual(Double(instance.score), try XCTUnwrap(entry["score"] as? Double), accuracy: 1e-5)
                XCTAssertEqual(Double(instance.classScore), try XCTUnwrap(entry["class_score"] as? Double), accuracy: 1e-6)
            }
        }
    }

    func testHungarianAssignmentIsOptimalOnASmallMatrix() {
        // rows x columns: the optimum (0 -> 1, 1 -> 2, 2 -> 0) costs 1 + 2 + 1 = 4; a greedy row choice costs more
        let cost: [Float] = [3, 1, 5,
                             4, 3, 2,
                             1, 2, 9]
        XCTAssertEqual(VideoTracks.assignment(cost: cost, size: 3), [1, 2, 0])
        XCTAssertEqual(VideoTracks.assignment(cost: [], size: 0), [])
    }

    func testLatencyStatisticsMatchNumPy() throws {
        for entry in try cases("latency_stats") {
            let stats = try XCTUnwrap(LatencyStats(samplesMs: try doubles(entry["samples_ms"])))
            let expected = try XCTUnwrap(entry["stats"] as? [String: NSNumber])
            XCTAssertEqual(stats.n, expected["n"]?.intValue)
            XCTAssertEqual(stats.medianMs, try XCTUnwrap(expected["median_ms"]).doubleValue, accuracy: 1e-6)
            XCTAssertEqual(stats.p90Ms, try XCTUnwrap(expected["p90_ms"]).doubleValue, accuracy: 1e-6)
            XCTAssertEqual(stats.minMs, try XCTUnwrap(expected["min_ms"]).doubleValue, accuracy: 1e-6)
            XCTAssertEqual(stats.maxMs, try XCTUnwrap(expected["max_ms"]).doubleValue, accuracy: 1e-6)
            XCTAssertEqual(stats.meanMs, try XCTUnwrap(expected["mean_ms"]).doubleValue, accuracy: 1e-6)
            XCTAssertEqual(stats.stdMs, try XCTUnwrap(expected["std_ms"]).doubleValue, accuracy: 1e-6)
        }
    }

    func testResultFileDecodesAsPythonWroteIt() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "result", withExtension: "json", subdirectory: "Fixtures"))
        let result = try JSONDecoder().decode(BenchResult.self, from: Data(contentsOf: url))
        XCTAssertEqual(result.rows.map(\.status), [.ok, .oom])
        XCTAssertEqual(result.rows[0].loadWarmMs, 42)
        XCTAssertEqual(result.rows[0].placement?.costSharePercent["ane"] ?? nil, 90)
        XCTAssertEqual(result.rows[0].placement?.offANE.first?.op, "softmax")
        XCTAssertEqual(result.harness.planID, "0123456789abcdef")
        XCTAssertTrue(result.harness.finished)
    }

    func testBreadcrumbDecodesAsPythonWroteIt() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "breadcrumb", withExtension: "json", subdirectory: "Fixtures"))
        let crumb = try JSONDecoder().decode(Breadcrumb.self, from: Data(contentsOf: url))
        XCTAssertEqual(crumb.planID, "0123456789abcdef")
        XCTAssertEqual(crumb.jobID, "RepViTSAMEncoder|encoder|-|all")
        XCTAssertEqual(crumb.stage, "first prediction")
        XCTAssertEqual(crumb.footprintMB, 1350.5)
        XCTAssertEqual(crumb.availableMemoryMB, 1800)
    }
}
