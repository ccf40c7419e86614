// The apps import SAMHarnessKit alone: the platform-neutral core comes with it.
@_exported import SAMHarnessCore

#if compiler(<6.0)
#error("SAMHarnessKit needs Xcode 16 or newer (the Swift 6 compiler with the iOS 18 / macOS 15 SDKs)")
#endif
