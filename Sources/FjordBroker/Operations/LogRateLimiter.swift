import Logging
import NIOCore
import Synchronization

/// Keeps bad clients from flooding the broker's log: lets through at most `burst` messages of one
/// kind per `interval`, and the first message let through after some were held back says how
/// many (`log.suppressed`).
///
/// Every connection reports its own bad input (a TLS failure, a malformed frame, a refused
/// connection), so a client reconnecting in a loop, or a scan of the port, would otherwise write a
/// line per attempt. Shared by all connections of a broker; safe from any thread.
///
/// ```swift
/// let limiter = LogRateLimiter(burst: 10, interval: .seconds(10))
/// limiter.log(logger, .warning, "closing the connection after a protocol error", metadata: ["error": "\(error)"])
/// ```
final class LogRateLimiter: Sendable {
    private struct Window {
        var start: NIODeadline
        var emitted: Int
        var suppressed: Int
    }

    /// Messages of one kind let through per interval.
    let burst: Int
    /// Length of a window.
    let interval: TimeAmount
    private let windows = Mutex<[String: Window]>([:])

    init(burst: Int = 10, interval: TimeAmount = .seconds(10)) {
        precondition(burst > 0)
        self.burst = burst
        self.interval = interval
    }

    /// Whether a message of `kind` may be logged at `now`; `nil` if it is held back, otherwise the
    /// number of messages of that kind held back since the last one let through.
    func admit(_ kind: String, now: NIODeadline = .now()) -> Int? {
        windows.withLock { windows in
            var window = windows[kind] ?? Window(start: now, emitted: 0, suppressed: 0)
            if now - window.start >= interval {
                window.start = now
                window.emitted = 0
            }
            guard window.emitted < burst else {
                window.suppressed += 1
                windows[kind] = window
                return nil
            }
            window.emitted += 1
            let suppressed = window.suppressed
            window.suppressed = 0
            windows[kind] = window
            return suppressed
        }
    }

    /// Logs `message` (its text is the kind) unless too many like it were logged lately.
    func log(
        _ logger: Logger, _ level: Logger.Level, _ message: Logger.Message,
        metadata: @autoclosure () -> Logger.Metadata = [:]
    ) {
        guard logger.logLevel <= level, let suppressed = admit(message.description) else { return }
        var metadata = metadata()
        if suppressed > 0 { metadata["log.suppressed"] = "\(suppressed)" }
        logger.log(level: level, message, metadata: metadata)
    }
}
