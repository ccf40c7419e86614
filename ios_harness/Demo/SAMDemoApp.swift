import CoreGraphics
import ImageIO
import PhotosUI
import SAMHarnessKit
import SwiftUI

/// Pick a photo, tap to add points (positive or negative), or drag a box, and see the mask; or pick a video
/// and track objects through it (TrackView.swift, EdgeTAM).
///
/// Builds against the classes Xcode generates from `RepViTSAMEncoder.mlpackage` and
/// `RepViTSAMDecoder.mlpackage` as `samexport convert --encoder repvit --target coreml` writes them
/// by default (image input, iOS16 target, SAM-style decoder with a mask input). Other packages
/// generate other class and input names: rename them in Segmenter.swift.
@main
struct SAMDemoApp: App {
    var body: some Scene {
        WindowGroup {
            TabView {
                SegmentView().tabItem { Label("Photo", systemImage: "photo") }
                TrackView().tabItem { Label("Video", systemImage: "video") }
            }
        }
    }
}

@MainActor
final class SegmentModel: ObservableObject {
    @Published private(set) var image: CGImage?
    @Published private(set) var overlay: CGImage?
    @Published private(set) var status = "Pick a photo"
    @Published var prompt = Prompt()
    private var segmenter: Segmenter?
    private var embedding: Segmenter.Embedding?
    /// Bumped for every photo and prompt: a result that comes back after a newer request is dropped.
    private var generation = 0

    func load(_ item: PhotosPickerItem?) async {
        guard let item else { return }
        do {
            guard let data = try await item.loadTransferable(type: Data.self), let picked = Self.decode(data) else {
                status = "That item is not an image"
                return
            }
            generation += 1
            let request = generation
            image = picked
            overlay = nil
            embedding = nil
            prompt = Prompt()
            status = "Encoding…"
            let existing = self.segmenter
            let start = Date()
            // Loading the models (first time) and encoding both stay off the main actor.
            let (segmenter, encoded) = try await Task.detached(priority: .userInitiated) {
                let segmenter = try existing ?? Segmenter()
                return (segmenter, try segmenter.embed(picked))
            }.value
            self.segmenter = segmenter
            guard request == generation else { return }  // another photo was picked meanwhile
            embedding = encoded
            status = String(format: "Encoded in %.0f ms. Tap to add points, drag for a box.",
                            Date().timeIntervalSince(start) * 1000)
        } catch {
            status = "Failed: \(error.localizedDescription)"
        }
    }

    func add(_ click: Click) {
        prompt.clicks.append(click)
        Task { await segment() }
    }

    func setBox(_ box: CGRect) {
        prompt.box = box
        Task { await segment() }
    }

    /// Every object at once: everything mode over a 16 x 16 grid, each mask in its own colour.
    func everything() async {
        guard let segmenter, let embedding else { return }
        generation += 1
        let request = generation
        prompt = Prompt()
        status = "Segmenting everything…"
        do {
            let start = Date()
            let masks = try await Task.detached(priority: .userInitiated) { try segmenter.everything(in: embedding) }.value
            guard request == generation else { return }
            overlay = Segmenter.Mask.overlay(of: masks)
            status = "\(masks.count) masks in " + String(format: "%.0f ms", Date().timeIntervalSince(start) * 1000)
        } catch {
            status = "Failed: \(error.localizedDescription)"
        }
    }

    func clear() {
        generation += 1
        prompt = Prompt()
        overlay = nil
    }

    private func segment() async {
        guard let segmenter, let embedding, !prompt.isEmpty else { return }
        let prompt = self.prompt
        generation += 1
        let request = generation
        do {
            let start = Date()
            let mask = try await Task.detached(priority: .userInitiated) { try segmenter.mask(for: prompt, in: embedding) }.value
            guard request == generation else { return }  // a newer prompt's mask is on its way
            overlay = mask.overlay()
            status = String(format: "Decoded in %.0f ms, IoU score %.2f", Date().timeIntervalSince(start) * 1000, mask.score)
        } catch {
            status = "Failed: \(error.localizedDescription)"
        }
    }

    /// The photo upright (EXIF orientation applied), at most 2048 px on its longest side.
    private static func decode(_ data: Data) -> CGImage? {
        guard let source = CGImageSourceCreateWithData(data as CFData, nil) else { return nil }
        let options: [CFString: Any] = [kCGImageSourceCreateThumbnailFromImageAlways: true,
                                        kCGImageSourceCreateThumbnailWithTransform: true,
                                        kCGImageSourceThumbnailMaxPixelSize: 2048]
        return CGImageSourceCreateThumbnailAtIndex(source, 0, options as CFDictionary)
    }
}

struct SegmentView: View {
    @StateObject private var model = SegmentModel()
    @State private var item: PhotosPickerItem?
    @State private var positive = true
    @State private var dragStart: CGPoint?
    @State private var dragRect: CGRect?

    var body: some View {
        VStack(spacing: 12) {
            HStack {
                PhotosPicker("Photo", selection: $item, matching: .images)
                Picker("Click", selection: $positive) {
                    Text("Add").tag(true)
                    Text("Remove").tag(false)
                }
                .pickerStyle(.segmented)
                Button("Everything") { Task { await model.everything() } }
                Button("Clear") { model.clear() }
            }
            Text(model.status).font(.footnote).foregroundStyle(.secondary)
            if let image = model.image {
                GeometryReader { proxy in
                    let frame = Self.fitted(CGSize(width: image.width, height: image.height), in: proxy.size)
                    let scale = CGFloat(image.width) / frame.width
                    ZStack(alignment: .topLeading) {
                        Image(decorative: image, scale: 1).resizable().frame(width: frame.width, height: frame.height)
                        if let overlay = model.overlay {
                            Image(decorative: overlay, scale: 1).resizable().frame(width: frame.width, height: frame.height)
                        }
                        ForEach(Array(model.prompt.clicks.enumerated()), id: \.offset) { _, click in
                            Circle().fill(click.positive ? Color.green : Color.red).frame(width: 12, height: 12)
                                .position(x: click.location.x / scale, y: click.location.y / scale)
                        }
                        if let rect = dragRect ?? model.prompt.box.map({ Self.scaled($0, by: 1 / scale) }) {
                            Rectangle().stroke(Color.yellow, lineWidth: 2)
                                .frame(width: rect.width, height: rect.height)
                                .position(x: rect.midX, y: rect.midY)
                        }
                    }
                    .frame(width: frame.width, height: frame.height)
                    .contentShape(Rectangle())
                    .gesture(
                        DragGesture(minimumDistance: 0)
                            .onChanged { value in
                                dragStart = dragStart ?? value.startLocation
                                dragRect = Self.rect(from: value.startLocation, to: value.location)
                            }
                            .onEnded { value in
                                let rect = Self.rect(from: value.startLocation, to: value.location)
                                if rect.width < 8 && rect.height < 8 {
                                    model.add(Click(location: CGPoint(x: value.location.x * scale, y: value.location.y * scale),
                                                    positive: positive))
                                } else {
                                    model.setBox(Self.scaled(rect, by: scale))
                                }
                                dragStart = nil
                                dragRect = nil
                            }
                    )
                    .position(x: proxy.size.width / 2, y: proxy.size.height / 2)
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

    /// The aspect-fit size of an image in the available space.
    static func fitted(_ size: CGSize, in space: CGSize) -> CGSize {
        let scale = min(space.width / size.width, space.height / size.height)
        return CGSize(width: size.width * scale, height: size.height * scale)
    }

    static func rect(from start: CGPoint, to end: CGPoint) -> CGRect {
        CGRect(x: min(start.x, end.x), y: min(start.y, end.y), width: abs(end.x - start.x), height: abs(end.y - start.y))
    }

    static func scaled(_ rect: CGRect, by factor: CGFloat) -> CGRect {
        CGRect(x: rect.minX * factor, y: rect.minY * factor, width: rect.width * factor, height: rect.height * factor)
    }
}
