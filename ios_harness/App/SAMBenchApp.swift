import SAMHarnessKit
import SwiftUI
#if os(iOS)
import UIKit
#endif

/// The benchmark app: runs BenchPlan.json as soon as it opens and writes samexport-bench.json to
/// its Documents folder (macOS: to `--output DIR`, and quits when done with `--exit-when-done`).
@main
struct SAMBenchApp: App {
    @StateObject private var model = BenchmarkModel()

    var body: some Scene {
        WindowGroup {
            BenchmarkView(model: model)
                .task { model.start() }
        }
    }
}

@MainActor
final class BenchmarkModel: ObservableObject {
    @Published private(set) var lines: [String] = []
    @Published private(set) var state = "starting"
    private var started = false

    func start() {
        // Hosting SAMBenchTests launches this app too: the test runs the plan, so the app must not
        // start a second runner on the same result and breadcrumb files.
        guard !started, ProcessInfo.processInfo.environment["XCTestConfigurationFilePath"] == nil else { return }
        started = true
        #if os(iOS)
        UIApplication.shared.isIdleTimerDisabled = true  // a locked phone suspends the app mid-run
        #endif
        Task.detached(priority: .userInitiated) { [weak self] in
            do {
                let runner = BenchmarkRunner(locations: try .app())
                await self?.show(state: "running; results go to \(runner.resultFile.url.path)")
                let result = try await runner.run { line in
                    Task { @MainActor [weak self] in self?.lines.append(line) }
                }
                if !result.harness.finished {
                    exit(0)  // one job per launch: the driver relaunches the app for the next job
                }
                await self?.show(state: "finished: \(result.rows.count) results in \(runner.resultFile.url.lastPathComponent)")
                if CommandLine.arguments.contains("--exit-when-done") {
                    exit(0)
                }
            } catch {
                await self?.show(state: "failed: \(error.localizedDescription)")
                if CommandLine.arguments.contains("--exit-when-done") {
                    exit(1)
                }
            }
        }
    }

    private func show(state: String) {
        self.state = state
    }
}

struct BenchmarkView: View {
    @ObservedObject var model: BenchmarkModel

    var body: some View {
        VStack(alignment: .leading, spacing: 12) {
            Text("samexport bench").font(.headline)
            Text(model.state).font(.subheadline).foregroundStyle(.secondary)
            Text("Keep this app in the foreground and the device unlocked until it finishes.")
                .font(.footnote)
            ScrollView {
                LazyVStack(alignment: .leading, spacing: 4) {
                    ForEach(Array(model.lines.enumerated()), id: \.offset) { _, line in
                        Text(line).font(.system(.caption, design: .monospaced))
                    }
                }
            }
        }
        .padding()
        #if os(macOS)
        .frame(minWidth: 420, minHeight: 320)  // a window's minimum; on a phone it would clip the view
        #endif
    }
}
