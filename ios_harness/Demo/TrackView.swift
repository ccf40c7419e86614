import AVFoundation
import CoreGraphics
import CoreML
import PhotosUI
import SAMHarnessKit
import SwiftUI

/// Pick a video, tap an object on any frame (each tap in Add mode starts a new object, Remove refines the
/// latest), then Track: EdgeTAM's memory-bank tracker (`MemoryTracker` over `CoreMLTrackerParts`) follows
/// every object through the clip; scrub to see each frame's masks.
///
/// Needs the five packages `samexport convert --encoder edgetam --target coreml` writes
/// (`EdgeTAMEncoder.mlpackage`, `EdgeTAMPrompt_decoder.mlpackage`, `EdgeTAMTrack_decoder.mlpackage`,
/// `EdgeTAMMemory_attention.mlpackage`, `EdgeTAMMemory_encoder.mlpackage`) in the SAMDemo target; they are
/// loaded by name, so no generated class is needed.
@MainActor
final class TrackModel: ObservableObject {
    /// Frames are read at most this often and this large: the tracker keeps every frame's result.
    static let framesPerSecond = 10.0
    static let maxFrames = 150
    static let maxSide = 720

    @Published private(set) var frames: [CGImage] = []
    @Published private(set) var overlays: [Int: CGImage] = [:]
    @Published private(set) var status = "Pick a video"
    @Published var shown = 0
    @Published private(set) var clicks: [(frame: Int, location: CGPoint, positive: Bool)] = []
    private var tracker: MemoryTracker?
    private var objects = 0
    /// Bumped for every video and prompt: a result that comes back after a newer request is dropped.
    private var generation = 0

    func load(_ item: PhotosPickerItem?) async {
        guard let item else { return }
        generation += 1
        let request = generation
        status = "Reading frames…"
        frames = []
        overlays = [:]
        clicks = []
        objects = 0
        tracker = nil
        do {
            guard let data = try await item.loadTransferable(type: Data.self) else {
                status = "That item has no video data"
                return
            }
            let url = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString + ".mov")
            try data.write(to: url)
            defer { try? FileManager.default.removeItem(at: url) }
            let picked = try await Self.readFrames(url)
            guard request == generation else { return }  // another video was picked meanwhile
            guard let first = picked.first else {
                status = "That video has no frames"
                return
            }
            frames = picked
            shown = 0
            status = "Loading EdgeTAM…"
            let made = try await Task.detached(priority: .userInitiated) { () -> MemoryTracker in
                let parts = try CoreMLTrackerParts(models: try CoreMLTrackerParts.bundled()) { picked[$0] }
                return try MemoryTracker(parts: parts, config: try parts.trackerConfig(), frameCount: picked.count,
                                         videoWidth: first.width, videoHeight: first.height,
                                         packedPrompts: parts.packedPrompts)
            }.value
            guard request == generation else { return }
            tracker = made
            status = "\(picked.count) frames. Tap an object, then Track."
        } catch {
            status = "Failed: \(error.localizedDescription)"
        }
    }

    /// A click on the shown frame: a new object in Add mode, else a negative click on the latest object.
    func tap(at location: CGPoint, positive: Bool) async {
        guard let tracker, !tracker.trackingHasStarted || !positive else {
            status = "Objects are added before tracking; pick the video again to start over"
            return
        }
        if positive || objects == 0 { objects += 1 }
        let object = objects, frame = shown
        clicks.append((frame, location, positive))
        generation += 1
        let request = generation
        do {
            let start = Date()
            let result = try await Task.detached(priority: .userInitiated) {
                try tracker.addPrompt(frame: frame, object: object, points: [[Float(location.x), Float(location.y)]],
                                      labels: [positive ? 1 : 0], clearOldPoints: false)
            }.value
            guard request == generation else { return }
            overlays[frame] = Self.overlay(result, width: tracker.videoWidth, height: tracker.videoHeight)
            status = "Object \(object) on frame \(frame) in "
                + String(format: "%.0f ms. Tap more, or Track.", Date().timeIntervalSince(start) * 1000)
        } catch {
            status = "Failed: \(error.localizedDescription)"
        }
    }

    /// Every object through the clip: forwards from its earliest prompted frame, then backwards to frame 0.
    func track() async {
        guard let tracker, objects > 0 else { return }
        generation += 1
        let request = generation
        status = "Tracking…"
        let start = Date()
        do {
            let first = clicks.map(\.frame).min() ?? 0
            let tracked = try await Task.detached(priority: .userInitiated) { () -> [TrackedFrame] in
                var results = [TrackedFrame]()
                try tracker.propagate(start: first) { results.append($0) }
                if first > 0 { try tracker.propagate(start: first, reverse: true) { results.append($0) } }
                return results
            }.value
            guard request == generation else { return }
            for frame in tracked {
                overlays[frame.frame] = Self.overlay(frame, width: tracker.videoWidth, height: tracker.videoHeight)
            }
            status = "Tracked \(Set(tracked.map(\.frame)).count) frames at "
                + String(format: "%.1f frames/s", Double(tracked.count) / Date().timeIntervalSince(start))
        } catch {
            status = "Failed: \(error.localizedDescription)"
        }
    }

    /// Every object's mask on one frame, each object in its own colour (the same in every frame).
    private static func overlay(_ frame: TrackedFrame, width: Int, height: Int) -> CGImage? {
        let masks = frame.videoLogits.map {
            Segmenter.Mask(width: width, height: height, pixels: MaskPostprocessing.binarize($0), score: 0)
        }
        return Segmenter.Mask.overlay(of: masks, colors: frame.objectIds.map { OverlayPalette.color($0) })
    }

    /// Frames of the clip, upright, at most `framesPerSecond` and `maxFrames` of them, longest side `maxSide`.
    private static func readFrames(_ url: URL) async throws -> [CGImage] {
        let asset = AVURLAsset(url: url)
        let duration = try await asset.load(.duration).seconds
        let generator = AVAssetImageGenerator(asset: asset)
        generator.appliesPreferredTrackTransform = true
        generator.maximumSize = CGSize(width: maxSide, height: maxSide)
        generator.requestedTimeToleranceBefore = .zero
        generator.requestedTimeToleranceAfter = .zero
        let count = min(maxFrames, max(1, Int(duration * framesPerSecond)))
        var frames = [CGImage]()
        for index in 0..<count {
            let time = CMTime(seconds: Double(index) / framesPerSecond, preferredTimescale: 600)
            frames.append(try await generator.image(at: time).image)
        }
        return frames
    }
}

struct TrackView: View {
    @StateObject private var model = TrackModel()
    @State private var item: PhotosPickerItem?
    @State private var positive = true

    var body: some View {
        VStack(spacing: 12) {
            HStack {
                PhotosPicker("Video", selection: $item, matching: .videos)
                Picker("Click", selection: $positive) {
                    Text("Add").tag(true)
                    Text("Remove").tag(false)
                }
                .pickerStyle(.segmented)
                Button("Track") { Task { await model.track() } }
            }
            Text(model.status).font(.footnote).foregroundStyle(.secondary)
            if model.frames.indices.contains(model.shown) {
                let image = model.frames[model.shown]
                GeometryReader { proxy in
                    let frame = SegmentView.fitted(CGSize(width: image.width, height: image.height), in: proxy.size)
                    let scale = CGFloat(image.width) / frame.width
                    ZStack(alignment: .topLeading) {
                        Image(decorative: image, scale: 1).resizable().frame(width: frame.width, height: frame.height)
                        if let overlay = model.overlays[model.shown] {
                            Image(decorative: overlay, scale: 1).resizable().frame(width: frame.width, height: frame.height)
                        }
                        ForEach(Array(model.clicks.enumerated()), id: \.offset) { _, click in
                            if click.frame == model.shown {
                                Circle().fill(click.positive ? Color.green : Color.red).frame(width: 12, height: 12)
                                    .position(x: click.location.x / scale, y: click.location.y / scale)
                            }
                        }
                    }
                    .frame(width: frame.width, height: frame.height)
                    .contentShape(Rectangle())
                    .onTapGesture { location in
                        Task { await model.tap(at: CGPoint(x: location.x * scale, y: location.y * scale), positive: positive) }
                    }
                    .position(x: proxy.size.width / 2, y: proxy.size.height / 2)
                }
                if model.frames.count > 1 {
                    Slider(value: Binding(get: { Double(model.shown) }, set: { model.shown = Int($0.rounded()) }),
                           in: 0...Double(model.frames.count - 1), step: 1)
                    Text("Frame \(model.shown + 1) of \(model.frames.count)").font(.footnote)
                }
            } else {
                Spacer()
            }
        }
        .padding()
        .onChange(of: item) { newItem in
            Task { await model.load(newItem) }
        }
    }
}
