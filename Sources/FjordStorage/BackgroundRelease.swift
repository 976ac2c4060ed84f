import Dispatch

/// Where the last references to segment files are let go of when they are dropped on an event
/// loop: unmapping pages (`madvise`), and closing a descriptor or unmapping a segment that
/// retention deleted meanwhile, which frees its blocks on disk. None of that may run on an
/// event loop, and a buffer or file region that carried a fetch response is released there.
enum BackgroundRelease {
    private static let queue = DispatchQueue(label: "fjord.storage.release")

    /// Runs `work` on the release queue, in order.
    static func run(_ work: @escaping @Sendable () -> Void) {
        queue.async(execute: work)
    }

    /// Waits until everything handed over so far has run (for tests).
    static func drain() {
        queue.sync {}
    }
}
