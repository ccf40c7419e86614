import Foundation
import XCTest
@testable import SAMHarnessCore

/// The parts of Python's recorded session (Tests/Fixtures/memory_tracker.json, written by
/// tests/harness_golden.py from samexport's `VideoTracker` on toy parts): each call must be the part Python
/// called next, with exactly the inputs Python built; it answers Python's outputs.
private final class ReplayedParts: TrackerPartRunner {
    struct Call {
        let part: String
        let frame: Int?
        let inputs: [String: TrackerTensor]
        let outputs: [String: TrackerTensor]
    }

    let calls: [Call]
    private(set) var next = 0
    var mismatches: [String] = []

    init(calls: [Call]) { self.calls = calls }

    func encode(frame: Int) throws -> [String: TrackerTensor] {
        try run(part: "encoder", inputs: [:], frame: frame)
    }

    func run(part: String, inputs: [String: TrackerTensor]) throws -> [String: TrackerTensor] {
        try run(part: part, inputs: inputs, frame: nil)
    }

    private func run(part: String, inputs: [String: TrackerTensor], frame: Int?) throws -> [String: TrackerTensor] {
        guard next < calls.count else {
            mismatches.append("call \(next) (\(part)) is one more than Python made")
            return [:]
        }
        let call = calls[next]
        defer { next += 1 }
        if call.part != part { mismatches.append("call \(next): \(part), Python called \(call.part)") }
        if part == "encoder" {
            // the image is the runner's; which frame is the tracker's choice
            if frame != call.frame { mismatches.append("call \(next): encoder on frame \(frame ?? -1), Python's \(call.frame ?? -1)") }
        } else {
            if Set(inputs.keys) != Set(call.inputs.keys) {
                mismatches.append("call \(next) (\(part)): inputs \(inputs.keys.sorted()), Python's \(call.inputs.keys.sorted())")
            }
            for (name, expected) in call.inputs {
                guard let got = inputs[name] else { continue }
                if got.shape != expected.shape {
                    mismatches.append("call \(next) (\(part)) \(name): shape \(got.shape), Python's \(expected.shape)")
                    continue
                }
                let worst = zip(got.values, expected.values).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
                if worst > 1e-6 { mismatches.append("call \(next) (\(part)) \(name): off by \(worst)") }
            }
        }
        return call.outputs
    }
}

final class MemoryTrackerTests: XCTestCase {
    private func fixture() throws -> [String: Any] {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "memory_tracker", withExtension: "json", subdirectory: "Fixtures"))
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    private func floats(_ text: Any?) throws -> [Float] {
        try XCTUnwrap(text as? String).split(separator: " ").map { try XCTUnwrap(Float(String($0))) }
    }

    private func tensors(_ value: Any?) throws -> [String: TrackerTensor] {
        var out = [String: TrackerTensor]()
        for (name, entry) in try XCTUnwrap(value as? [String: [String: Any]]) {
            out[name] = TrackerTensor(shape: try XCTUnwrap(entry["shape"] as? [Int]), values: try floats(entry["values"]))
        }
        return out
    }

    private func assertFrame(_ got: TrackedFrame, _ expected: [String: Any], width: Int, height: Int,
                             file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(got.frame, try XCTUnwrap(expected["frame"] as? Int), file: file, line: line)
        XCTAssertEqual(got.objectIds, try XCTUnwrap(expected["objects"] as? [Int]), file: file, line: line)
        let logits = try floats(expected["video_logits"])
        XCTAssertEqual(logits.count, got.objectIds.count * width * height, file: file, line: line)
        let ours = got.videoLogits.flatMap { $0 }
        let worst = zip(ours, logits).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThan(worst, 2e-4, "frame \(got.frame): video logits off by \(worst)", file: file, line: line)
        let flipped = zip(ours, logits).filter { ($0 > 0) != ($1 > 0) && abs($1) > 2e-4 }.count
        XCTAssertEqual(flipped, 0, "frame \(got.frame): mask pixels flipped", file: file, line: line)
    }

    /// The Swift tracker makes Python's calls with Python's inputs (memory slots, temporal rows, validity,
    /// pointers, prompt tokens, mask inputs, bfloat16 memories, hole filling, the token choice) and yields
    /// Python's masks, over a session of prompts, corrections and propagation both ways.
    func testTrackerReplaysPythonsSession() throws {
        let root = try fixture()
        let settings = try XCTUnwrap(root["config"] as? [String: Int])
        var config = MemoryTrackerConfig()
        config.numMaskmem = try XCTUnwrap(settings["num_maskmem"])
        config.recentFrames = try XCTUnwrap(settings["recent_frames"])
        config.condSlots = try XCTUnwrap(settings["cond_slots"])
        config.maxObjectPointers = try XCTUnwrap(settings["max_obj_ptrs"])
        config.fillHoleArea = try XCTUnwrap(settings["fill_hole_area"])
        config.imageSize = try XCTUnwrap(settings["image_size"])
        config.maskSize = 8
        config.memoryTokens = 4
        config.memoryChannels = 2
        config.pointerDim = 4
        XCTAssertEqual(config.memorySlots, settings["memory_slots"])
        XCTAssertEqual(config.pointerSlots, settings["pointer_slots"])
        let calls = try XCTUnwrap(root["calls"] as? [[String: Any]]).map { call in
            ReplayedParts.Call(part: try XCTUnwrap(call["part"] as? String), frame: call["frame"] as? Int,
                               inputs: try tensors(call["inputs"]), outputs: try tensors(call["outputs"]))
        }
        let parts = ReplayedParts(calls: calls)
        let width = try XCTUnwrap(root["width"] as? Int), height = try XCTUnwrap(root["height"] as? Int)
        let tracker = try MemoryTracker(parts: parts, config: config, frameCount: try XCTUnwrap(root["frames"] as? Int),
                                        videoWidth: width, videoHeight: height)
        for (index, step) in try XCTUnwrap(root["steps"] as? [[String: Any]]).enumerated() {
            let expected = try XCTUnwrap(step["results"] as? [[String: Any]])
            let span = try XCTUnwrap(step["calls"] as? [Int])
            if step["action"] as? String == "prompt" {
                let points = try XCTUnwrap(step["points"] as? [[Double]]).map { $0.map(Float.init) }
                let box = (step["box"] as? [Double])?.map(Float.init)
                let got = try tracker.addPrompt(
                    frame: try XCTUnwrap(step["frame"] as? Int), object: try XCTUnwrap(step["object"] as? Int),
                    points: points, labels: try XCTUnwrap(step["labels"] as? [Double]).map(Float.init), box: box,
                    clearOldPoints: try XCTUnwrap(step["clear_old_points"] as? Bool))
                try assertFrame(got, expected[0], width: width, height: height)
            } else {
                var yielded = [TrackedFrame]()
                try tracker.propagate(start: step["start"] as? Int, reverse: try XCTUnwrap(step["reverse"] as? Bool)) {
                    yielded.append($0)
                }
                XCTAssertEqual(yielded.map(\.frame), expected.compactMap { $0["frame"] as? Int }, "step \(index)")
                for (got, want) in zip(yielded, expected) { try assertFrame(got, want, width: width, height: height) }
            }
            XCTAssertEqual(parts.next, span[1], "step \(index): calls made")
            XCTAssertEqual(parts.mismatches, [], "step \(index)")
            parts.mismatches = []
        }
        for (object, outputs) in try XCTUnwrap(root["final_outputs"] as? [String: [[String: Any]]]) {
            for entry in outputs {
                let frame = try XCTUnwrap(entry["frame"] as? Int)
                let output = try XCTUnwrap(tracker.output(object: try XCTUnwrap(Int(object)), frame: frame))
                XCTAssertEqual(output.maskToken, entry["mask_token"] as? Int, "object \(object) frame \(frame)")
                XCTAssertEqual(Double(output.objectScore), try XCTUnwrap(entry["object_score"] as? Double), accuracy: 1e-5)
            }
        }
    }

    func testBFloat16RoundingIsNearestTiesToEven() {
        XCTAssertEqual(MemoryTracker.roundBFloat16(1.0), 1.0)
        XCTAssertEqual(MemoryTracker.roundBFloat16(Float(bitPattern: 0x3F80_8000)), 1.0)  // a tie: to even
        XCTAssertEqual(MemoryTracker.roundBFloat16(Float(bitPattern: 0x3F81_8000)), Float(bitPattern: 0x3F82_0000))
        XCTAssertEqual(MemoryTracker.roundBFloat16(Float(bitPattern: 0x3F80_8001)), Float(bitPattern: 0x3F81_0000))
    }

    func testHolesOfAtMostTheAreaAreFilledAndLargerOnesKept() {
        // 5x5 foreground with a 1-pixel hole and a 3-pixel hole; maxArea 2 fills only the first
        var mask = [Float](repeating: 1, count: 25)
        mask[6] = -1
        for pixel in [13, 18, 23] { mask[pixel] = -2 }
        let filled = MemoryTracker.fillHoles(mask, side: 5, maxArea: 2)
        XCTAssertEqual(filled[6], 0.1)
        XCTAssertEqual([13, 18, 23].map { filled[$0] }, [-2, -2, -2])
    }

    func testPromptsOutsideTheClipAreRefused() throws {
        final class NoParts: TrackerPartRunner {
            func encode(frame: Int) throws -> [String: TrackerTensor] { [:] }
            func run(part: String, inputs: [String: TrackerTensor]) throws -> [String: TrackerTensor] { [:] }
        }
        let tracker = try MemoryTracker(parts: NoParts(), frameCount: 3, videoWidth: 4, videoHeight: 4)
        XCTAssertThrowsError(try tracker.addPrompt(frame: 3, object: 1, points: [[1, 1]], labels: [1])) {
            XCTAssertEqual($0 as? MemoryTrackerError, .frameOutsideClip(frame: 3, frames: 3))
        }
        XCTAssertThrowsError(try tracker.addPrompt(frame: 0, object: 1)) {
            XCTAssertEqual($0 as? MemoryTrackerError, .emptyPrompt)
        }
        XCTAssertThrowsError(try tracker.propagate { _ in }) {
            XCTAssertEqual($0 as? MemoryTrackerError, .noObjects)
        }
    }
}
