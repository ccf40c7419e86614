import Foundation

/// A float32 tensor one of the tracker's parts takes or gives: row-major values and their shape.
public struct TrackerTensor: Equatable {
    public var shape: [Int]
    public var values: [Float]

    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "a tensor of shape \(shape) holds \(shape.reduce(1, *)) values")
        self.shape = shape
        self.values = values
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, values: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    public init(scalar: Float) {
        self.init(shape: [1], values: [scalar])
    }
}

/// Runs EdgeTAM's exported parts (the manifest names their inputs and outputs): Core ML in the app
/// (`CoreMLTrackerParts`), a recording in tests.
public protocol TrackerPartRunner {
    /// The `encoder` part's outputs (`visionFeatures`, `highResFeatures0`, `highResFeatures1`) for a frame of
    /// the clip: the runner reads the frame and makes the encoder's input of it.
    func encode(frame: Int) throws -> [String: TrackerTensor]
    /// One call of `prompt_decoder`, `track_decoder`, `memory_attention` or `memory_encoder`.
    func run(part: String, inputs: [String: TrackerTensor]) throws -> [String: TrackerTensor]
}

/// The memory bank's sizes and the predictor's options (the manifest's `input_contract.memory_bank` and the
/// parts' shapes), as `samexport.families.edgetam.tracker.TrackerConfig`.
public struct MemoryTrackerConfig: Equatable {
    /// The model's temporal rows: conditioning frames' memories at row numMaskmem - 1, recent ones below.
    public var numMaskmem = 7
    /// Slots for conditioning frames (the closest ones in time when there are more).
    public var condSlots = 2
    /// The memories of this many most recent tracked frames, the one t frames back at row t - 1 (the official
    /// numMaskmem - 1; fewer make a small memory bank).
    public var recentFrames = 6
    public var maxObjectPointers = 16
    /// Background regions of at most this many pixels inside a low-res mask are filled.
    public var fillHoleArea = 8
    /// A correction on a tracked frame makes it a conditioning frame (Meta's setting).
    public var addAllFramesToCorrectAsCond = true
    /// Prompt coordinates are given in this square frame.
    public var imageSize = 1024
    public var stabilityDelta: Float = 0.05
    public var stabilityThresh: Float = 0.98
    /// The parts' tensor sizes: low-res masks maskSize x maskSize, memories memoryTokens x memoryChannels,
    /// object pointers pointerDim.
    public var maskSize = 256
    public var memoryTokens = 512
    public var memoryChannels = 64
    public var pointerDim = 256

    public init() {}

    public var memorySlots: Int { condSlots + recentFrames }
    public var pointerSlots: Int { condSlots + maxObjectPointers - 1 }
}

public enum MemoryTrackerError: Error, Equatable, CustomStringConvertible {
    case frameOutsideClip(frame: Int, frames: Int)
    case emptyPrompt
    case pointsWithoutLabels(points: Int, labels: Int)
    case boxAfterPoints
    case objectAfterTrackingStarted(object: Int)
    case noObjects
    case objectWithoutPrompt(object: Int)
    case missingOutput(part: String, name: String)

    public var description: String {
        switch self {
        case let .frameOutsideClip(frame, frames):
            return "frame \(frame) is not in the clip (it has frames 0..\(frames - 1))"
        case .emptyPrompt:
            return "give points (with labels) or a box"
        case let .pointsWithoutLabels(points, labels):
            return "\(points) points but \(labels) labels; give one label per point"
        case .boxAfterPoints:
            return "a box must come before any point: clear the old points with a box"
        case let .objectAfterTrackingStarted(object):
            return "cannot add object \(object) after tracking has started; reset first"
        case .noObjects:
            return "no objects to track; add points or a box first"
        case let .objectWithoutPrompt(object):
            return "object \(object) has no prompt; add points or a box for it first"
        case let .missingOutput(part, name):
            return "the \(part) part gave no \(name) output"
        }
    }
}

/// One object's result on one frame: the stored (hole-filled) low-res mask logits, the object pointer and
/// score, its memory (bfloat16 values) once encoded, and which mask token was chosen.
public struct TrackedOutput: Equatable {
    public var lowResMask: [Float]
    public var objectPointer: [Float]
    public var objectScore: Float
    public var memory: [Float]?
    public var maskToken: Int
}

/// Every object's mask on one frame, as the official predictor yields it: logits at the video size
/// (threshold at 0), one map per object in `objectIds` order; a frame an object has no output on is all
/// `MemoryTracker.noObjectScore`.
public struct TrackedFrame: Equatable {
    public let frame: Int
    public let objectIds: [Int]
    public let videoLogits: [[Float]]
}

/// Outputs by frame in insertion order, a re-assigned frame keeping its place (the official predictor's
/// dicts: the memory bank's slot order follows it).
struct FrameOutputs {
    private(set) var frames: [Int] = []
    private var outputs: [Int: TrackedOutput] = [:]

    subscript(frame: Int) -> TrackedOutput? {
        get { outputs[frame] }
        set {
            if let value = newValue {
                if outputs[frame] == nil { frames.append(frame) }
                outputs[frame] = value
            } else if outputs.removeValue(forKey: frame) != nil {
                frames.removeAll { $0 == frame }
            }
        }
    }

    var isEmpty: Bool { frames.isEmpty }
    var count: Int { frames.count }
    func contains(_ frame: Int) -> Bool { outputs[frame] != nil }
    var ordered: [(frame: Int, output: TrackedOutput)] { frames.map { ($0, outputs[$0]!) } }
    mutating func removeAll() { frames = []; outputs = [:] }
}

/// One object's state: conditioning and tracked frames' outputs, prompts not yet propagated, its points.
final class ObjectTrack {
    var cond = FrameOutputs()
    var nonCond = FrameOutputs()
    var tempCond = FrameOutputs()
    var tempNonCond = FrameOutputs()
    var points: [Int: (coords: [Float], labels: [Float])] = [:]
    /// frame -> tracked in reverse
    var tracked: [Int: Bool] = [:]

    /// The latest output on a frame: a prompt's not yet propagated, else the stored one.
    func output(at frame: Int) -> TrackedOutput? {
        tempCond[frame] ?? tempNonCond[frame] ?? cond[frame] ?? nonCond[frame]
    }
}

/// SAM 2's video predictor over EdgeTAM's stateless parts, in the app: objects prompted on any frame,
/// corrections, the memory bank, propagation forwards and backwards. What
/// `samexport.families.edgetam.tracker.VideoTracker` does in Python (the official `SAM2VideoPredictor`'s
/// semantics), call for call: the memory bank is fixed-size slots (the closest conditioning frames, then the
/// most recent tracked frames, each with its one-hot temporal row) and object-pointer slots with validity
/// flags, memories are stored as bfloat16 values, at most one point uses the best of the multimask tokens,
/// object-score gating is inside the decoder graphs, and small holes of a stored mask are filled.
public final class MemoryTracker {
    public static let noObjectScore: Float = -1024
    public let config: MemoryTrackerConfig
    public let frameCount: Int
    public let videoWidth: Int
    public let videoHeight: Int
    /// The prompt decoder takes one packed `points` (1, N, 3) input (Core ML, Core AI) instead of
    /// `pointCoords` and `pointLabels`.
    public let packedPrompts: Bool
    private let parts: TrackerPartRunner
    private var features: [(frame: Int, outputs: [String: TrackerTensor])] = []  // the 2 latest frames'
    private var objects: [(id: Int, track: ObjectTrack)] = []
    public private(set) var trackingHasStarted = false

    /// A clip of `frameCount` frames of videoWidth x videoHeight pixels; the first frame is encoded at once,
    /// as the official `init_state` does.
    public init(parts: TrackerPartRunner, config: MemoryTrackerConfig = MemoryTrackerConfig(), frameCount: Int,
                videoWidth: Int, videoHeight: Int, packedPrompts: Bool = true) throws {
        precondition(frameCount > 0, "a clip has at least one frame")
        // the official selection of conditioning frames keeps the closest one before and after the frame
        precondition(config.condSlots >= 2 && (0..<config.numMaskmem).contains(config.recentFrames)
                     && config.maxObjectPointers >= 1,
                     "a tracker needs condSlots >= 2, recentFrames from 0 to numMaskmem - 1 and maxObjectPointers >= 1")
        self.parts = parts
        self.config = config
        self.frameCount = frameCount
        self.videoWidth = videoWidth
        self.videoHeight = videoHeight
        self.packedPrompts = packedPrompts
        _ = try frameFeatures(0)
    }

    public var objectIds: [Int] { objects.map(\.id) }

    /// The latest output of `object` on `frame`, or nil.
    public func output(object: Int, frame: Int) -> TrackedOutput? {
        objects.first { $0.id == object }?.track.output(at: frame)
    }

    /// Forget every object (the clip's features stay cached).
    public func reset() {
        objects = []
        trackingHasStarted = false
    }

    // MARK: - the official API

    /// Prompt `object` on `frame` with clicks (x, y in video pixels unless `normalizeCoords` is false;
    /// labels 1 positive, 0 negative) and/or a box [x0, y0, x1, y1].
    @discardableResult
    public func addPrompt(frame: Int, object: Int, points: [[Float]] = [], labels: [Float] = [], box: [Float]? = nil,
                          clearOldPoints: Bool = true, normalizeCoords: Bool = true) throws -> TrackedFrame {
        guard (0..<frameCount).contains(frame) else {
            throw MemoryTrackerError.frameOutsideClip(frame: frame, frames: frameCount)
        }
        guard !points.isEmpty || box != nil else { throw MemoryTrackerError.emptyPrompt }
        guard points.count == labels.count else {
            throw MemoryTrackerError.pointsWithoutLabels(points: points.count, labels: labels.count)
        }
        let track = try objectTrack(object)
        var coords = points.flatMap { $0.prefix(2) }
        var pointLabels = labels
        if let box {
            guard clearOldPoints else { throw MemoryTrackerError.boxAfterPoints }
            coords = Array(box.prefix(4)) + coords
            pointLabels = [2, 3] + pointLabels
        }
        let scale = Float(config.imageSize)
        let width = normalizeCoords ? Float(videoWidth) : 1
        let height = normalizeCoords ? Float(videoHeight) : 1
        coords = coords.enumerated().map { i, value in (value / (i % 2 == 0 ? width : height)) * scale }
        if !clearOldPoints, let old = track.points[frame] {
            coords = old.coords + coords
            pointLabels = old.labels + pointLabels
        }
        track.points[frame] = (coords, pointLabels)
        let isInitCond = track.tracked[frame] == nil
        let reverse = isInitCond ? false : track.tracked[frame]!
        let isCond = isInitCond || config.addAllFramesToCorrectAsCond
        let previous = (isCond ? track.tempCond[frame] : track.tempNonCond[frame]) ?? track.cond[frame] ?? track.nonCond[frame]
        let previousMask = previous.map { $0.lowResMask.map { Swift.min(Swift.max($0, -32), 32) } }
        let output = try runFrame(track, frame: frame, isInitCond: isInitCond, prompt: (coords, pointLabels),
                                  reverse: reverse, runMemoryEncoder: false, previousMask: previousMask)
        if isCond { track.tempCond[frame] = output } else { track.tempNonCond[frame] = output }
        return trackedFrame(frame)
    }

    /// Track every object from `start` (default: the earliest conditioning frame) over at most `maxFrames`
    /// frames, forwards or backwards; `body` gets each frame's masks as it is tracked.
    public func propagate(start: Int? = nil, maxFrames: Int? = nil, reverse: Bool = false,
                          _ body: (TrackedFrame) throws -> Void) throws {
        try preflight()
        let first = start ?? objects.flatMap { $0.track.cond.frames }.min()!
        guard (0..<frameCount).contains(first) else {
            throw MemoryTrackerError.frameOutsideClip(frame: first, frames: frameCount)
        }
        let length = maxFrames ?? frameCount
        let order: [Int]
        if reverse {
            let end = Swift.max(first - length, 0)
            order = first > 0 ? Array(stride(from: first, through: end, by: -1)) : []
        } else {
            let end = Swift.min(first + length, frameCount - 1)
            order = Array(first...end)
        }
        for frame in order {
            for (_, track) in objects {
                if track.cond[frame] == nil {
                    track.nonCond[frame] = try runFrame(track, frame: frame, isInitCond: false, prompt: nil,
                                                        reverse: reverse, runMemoryEncoder: true, previousMask: nil)
                }
                track.tracked[frame] = reverse
            }
            try body(trackedFrame(frame))
        }
    }

    // MARK: - the steps

    private func objectTrack(_ id: Int) throws -> ObjectTrack {
        if let found = objects.first(where: { $0.id == id }) { return found.track }
        guard !trackingHasStarted else { throw MemoryTrackerError.objectAfterTrackingStarted(object: id) }
        let track = ObjectTrack()
        objects.append((id, track))
        return track
    }

    private func frameFeatures(_ frame: Int) throws -> [String: TrackerTensor] {
        if let index = features.firstIndex(where: { $0.frame == frame }) {
            let cached = features.remove(at: index)
            features.append(cached)
            return cached.outputs
        }
        let outputs = try parts.encode(frame: frame)
        features.append((frame, outputs))
        if features.count > 2 { features.removeFirst() }
        return outputs
    }

    private func trackedFrame(_ frame: Int) -> TrackedFrame {
        TrackedFrame(frame: frame, objectIds: objectIds, videoLogits: objects.map { videoLogits($0.track.output(at: frame)) })
    }

    private func videoLogits(_ output: TrackedOutput?) -> [Float] {
        guard let output else {
            return [Float](repeating: Self.noObjectScore, count: videoWidth * videoHeight)
        }
        return MaskPostprocessing.resizeBilinear(output.lowResMask, width: config.maskSize, height: config.maskSize,
                                                 toWidth: videoWidth, toHeight: videoHeight)
    }

    private func output(_ outputs: [String: TrackerTensor], _ part: String, _ name: String) throws -> TrackerTensor {
        guard let tensor = outputs[name] else { throw MemoryTrackerError.missingOutput(part: part, name: name) }
        return tensor
    }

    private func runFrame(_ track: ObjectTrack, frame: Int, isInitCond: Bool, prompt: (coords: [Float], labels: [Float])?,
                          reverse: Bool, runMemoryEncoder: Bool, previousMask: [Float]?) throws -> TrackedOutput {
        let feats = try frameFeatures(frame)
        let vision = try output(feats, "encoder", "visionFeatures")
        let highRes = ["highResFeatures0": try output(feats, "encoder", "highResFeatures0"),
                       "highResFeatures1": try output(feats, "encoder", "highResFeatures1")]
        let pix = isInitCond ? vision : try attendMemory(track, frame: frame, vision: vision, reverse: reverse)
        let part: String
        var inputs = highRes.merging(["pixFeatures": pix]) { a, _ in a }
        var pointCount = 0
        if let prompt {
            part = "prompt_decoder"
            let tokens = prompt.labels.count + 1  // the padding token (0, 0) labelled -1 ends every prompt
            let coords = prompt.coords + [0, 0]
            let labels = prompt.labels + [-1]
            if packedPrompts {
                var points = [Float]()
                for i in 0..<tokens { points += [coords[2 * i], coords[2 * i + 1], labels[i]] }
                inputs["points"] = TrackerTensor(shape: [1, tokens, 3], values: points)
            } else {
                inputs["pointCoords"] = TrackerTensor(shape: [1, tokens, 2], values: coords)
                inputs["pointLabels"] = TrackerTensor(shape: [1, tokens], values: labels)
            }
            let side = config.maskSize
            inputs["maskInput"] = TrackerTensor(shape: [1, 1, side, side],
                                                values: previousMask ?? [Float](repeating: 0, count: side * side))
            inputs["hasMaskInput"] = TrackerTensor(scalar: previousMask == nil ? 0 : 1)
            inputs["noMemory"] = TrackerTensor(scalar: isInitCond ? 1 : 0)
            pointCount = prompt.labels.count
        } else {
            part = "track_decoder"
        }
        let out = try parts.run(part: part, inputs: inputs)
        let masks = try output(out, part, "lowResMasks").values
        let ious = try output(out, part, "iouScores").values
        let pointers = try output(out, part, "objectPointers").values
        let score = try output(out, part, "objectScore").values[0]
        let multimask = pointCount <= 1
        let pixels = config.maskSize * config.maskSize
        let tokens = ious.count
        let choice = Self.chooseToken(masks: masks, ious: ious, tokens: tokens, multimask: multimask, config: config)
        let chosen = Array(masks[(choice.mask * pixels)..<((choice.mask + 1) * pixels)])
        let dim = pointers.count / tokens
        var result = TrackedOutput(
            lowResMask: config.fillHoleArea > 0 ? Self.fillHoles(chosen, side: config.maskSize, maxArea: config.fillHoleArea) : chosen,
            objectPointer: Array(pointers[(choice.pointer * dim)..<((choice.pointer + 1) * dim)]),
            objectScore: score, memory: nil, maskToken: choice.mask)
        if runMemoryEncoder {
            result.memory = try encodeMemory(vision: vision, maskLogits: chosen, binarize: prompt != nil)
        }
        return result
    }

    private func encodeMemory(vision: TrackerTensor, maskLogits: [Float], binarize: Bool) throws -> [Float] {
        let side = config.maskSize
        let out = try parts.run(part: "memory_encoder", inputs: [
            "visionFeatures": vision,
            "maskLogits": TrackerTensor(shape: [1, 1, side, side], values: maskLogits),
            "binarize": TrackerTensor(scalar: binarize ? 1 : 0),
        ])
        return try output(out, "memory_encoder", "memory").values.map(Self.roundBFloat16)
    }

    private func preflight() throws {
        guard !objects.isEmpty else { throw MemoryTrackerError.noObjects }
        trackingHasStarted = true
        for (id, track) in objects {
            for (temp, isCond) in [(track.tempNonCond, false), (track.tempCond, true)] {
                for (frame, var output) in temp.ordered {
                    if output.memory == nil {
                        output.memory = try encodeMemory(vision: try self.output(try frameFeatures(frame), "encoder", "visionFeatures"),
                                                         maskLogits: output.lowResMask, binarize: true)
                    }
                    if isCond { track.cond[frame] = output } else { track.nonCond[frame] = output }
                }
            }
            track.tempNonCond.removeAll()
            track.tempCond.removeAll()
            guard !track.cond.isEmpty else { throw MemoryTrackerError.objectWithoutPrompt(object: id) }
            for frame in track.cond.frames { track.nonCond[frame] = nil }
        }
    }

    // MARK: - the memory bank

    /// The official memory selection for one object on one frame: (temporal row, output) of each memory in
    /// slot order, then the object pointers in slot order.
    func memoryBank(_ track: ObjectTrack, frame: Int, reverse: Bool) -> (memories: [(row: Int, output: TrackedOutput)], pointers: [[Float]]) {
        let (selected, unselected) = Self.closestCondFrames(frame: frame, cond: track.cond, maxCount: config.condSlots)
        var memories = selected.map { (row: config.numMaskmem - 1, output: $0.output) }
        let sign = reverse ? 1 : -1
        for back in stride(from: config.recentFrames, through: 1, by: -1) {  // the farthest first
            let previous = frame + sign * back
            if let output = track.nonCond[previous] ?? unselected[previous] {
                memories.append((back - 1, output))
            }
        }
        var pointers = selected.filter { reverse ? $0.frame >= frame : $0.frame <= frame }.map(\.output.objectPointer)
        let reach = Swift.min(frameCount, config.maxObjectPointers)
        if reach > 1 {
            for distance in 1..<reach {
                let other = frame + sign * distance
                if other < 0 || other >= frameCount { break }
                if let output = track.nonCond[other] ?? unselected[other] {
                    pointers.append(output.objectPointer)
                }
            }
        }
        return (memories, pointers)
    }

    private func attendMemory(_ track: ObjectTrack, frame: Int, vision: TrackerTensor, reverse: Bool) throws -> TrackerTensor {
        let bank = memoryBank(track, frame: frame, reverse: reverse)
        let slots = config.memorySlots, pointerSlots = config.pointerSlots
        let memorySize = config.memoryTokens * config.memoryChannels
        var memory = [Float](repeating: 0, count: slots * memorySize)
        var temporal = [Float](repeating: 0, count: slots * config.numMaskmem)
        var memoryValid = [Float](repeating: 0, count: slots)
        for (slot, entry) in bank.memories.prefix(slots).enumerated() {
            memory.replaceSubrange((slot * memorySize)..<((slot + 1) * memorySize), with: entry.output.memory!)
            temporal[slot * config.numMaskmem + entry.row] = 1
            memoryValid[slot] = 1
        }
        var pointers = [Float](repeating: 0, count: pointerSlots * config.pointerDim)
        var pointerValid = [Float](repeating: 0, count: pointerSlots)
        for (slot, pointer) in bank.pointers.prefix(pointerSlots).enumerated() {
            pointers.replaceSubrange((slot * config.pointerDim)..<((slot + 1) * config.pointerDim), with: pointer)
            pointerValid[slot] = 1
        }
        let out = try parts.run(part: "memory_attention", inputs: [
            "visionFeatures": vision,
            "memory": TrackerTensor(shape: [slots, config.memoryTokens, config.memoryChannels], values: memory),
            "memoryTemporal": TrackerTensor(shape: [slots, config.numMaskmem], values: temporal),
            "memoryValid": TrackerTensor(shape: [slots], values: memoryValid),
            "objectPointers": TrackerTensor(shape: [pointerSlots, config.pointerDim], values: pointers),
            "pointerValid": TrackerTensor(shape: [pointerSlots], values: pointerValid),
        ])
        return try output(out, "memory_attention", "pixFeatures")
    }

    // MARK: - the rules, as functions of values

    /// The official choice of conditioning frames when there are more than `maxCount`: the closest before,
    /// the closest at or after, then the closest others (ties in insertion order) -> (selected in that
    /// order, the rest by frame).
    static func closestCondFrames(frame: Int, cond: FrameOutputs, maxCount: Int)
        -> (selected: [(frame: Int, output: TrackedOutput)], unselected: [Int: TrackedOutput]) {
        let all = cond.ordered
        if maxCount < 0 || all.count <= maxCount { return (all, [:]) }
        var chosen = [Int]()
        if let before = all.map(\.frame).filter({ $0 < frame }).max() { chosen.append(before) }
        if let after = all.map(\.frame).filter({ $0 >= frame }).min() { chosen.append(after) }
        let rest = all.enumerated()
            .filter { !chosen.contains($0.element.frame) }
            .sorted { (abs($0.element.frame - frame), $0.offset) < (abs($1.element.frame - frame), $1.offset) }
            .map(\.element.frame)
        chosen += rest.prefix(Swift.max(maxCount - chosen.count, 0))
        var unselected = [Int: TrackedOutput]()
        for entry in all where !chosen.contains(entry.frame) { unselected[entry.frame] = entry.output }
        return (chosen.map { (frame: $0, output: cond[$0]!) }, unselected)
    }

    /// The official heads' choice among the mask tokens -> (the mask's token, the pointer's token).
    /// Multimask (at most one point): the best of tokens 1... by IoU for both. Otherwise token 0 unless its
    /// mask is unstable, then the best of 1...; the pointer always from token 0.
    public static func chooseToken(masks: [Float], ious: [Float], tokens: Int, multimask: Bool,
                                   config: MemoryTrackerConfig) -> (mask: Int, pointer: Int) {
        func bestOfTheRest() -> Int {
            var best = 1
            for token in 2..<tokens where ious[token] > ious[best] { best = token }
            return best
        }
        if multimask {
            let best = bestOfTheRest()
            return (best, best)
        }
        let pixels = masks.count / tokens
        var inside = 0, union = 0
        for value in masks[0..<pixels] {
            if value > config.stabilityDelta { inside += 1 }
            if value > -config.stabilityDelta { union += 1 }
        }
        let stability: Float = union > 0 ? Float(inside) / Float(union) : 1
        return (stability >= config.stabilityThresh ? 0 : bestOfTheRest(), 0)
    }

    /// A float32 value rounded to bfloat16 (nearest, ties to even), as float32: how the official predictor
    /// stores memories.
    public static func roundBFloat16(_ value: Float) -> Float {
        let bits = value.bitPattern
        let rounded = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000
        return Float(bitPattern: rounded)
    }

    /// Background (<= 0) 8-connected regions of at most `maxArea` pixels of a side x side mask set to 0.1
    /// (the official `fill_holes_in_mask_scores`).
    public static func fillHoles(_ mask: [Float], side: Int, maxArea: Int) -> [Float] {
        var out = mask
        var seen = [Bool](repeating: false, count: mask.count)
        for start in 0..<mask.count where mask[start] <= 0 && !seen[start] {
            var region = [start]
            seen[start] = true
            var next = 0
            while next < region.count {
                let pixel = region[next]
                next += 1
                let row = pixel / side, column = pixel % side
                for dy in -1...1 {
                    for dx in -1...1 where dy != 0 || dx != 0 {
                        let y = row + dy, x = column + dx
                        guard y >= 0, y < side, x >= 0, x < side else { continue }
                        let neighbour = y * side + x
                        if mask[neighbour] <= 0 && !seen[neighbour] {
                            seen[neighbour] = true
                            region.append(neighbour)
                        }
                    }
                }
            }
            if region.count <= maxArea {
                for pixel in region { out[pixel] = 0.1 }
            }
        }
        return out
    }
}
