/// How a client waits between attempts to reach a broker: exponential backoff with full jitter
/// (each delay is uniformly random between zero and the current ceiling), so many clients that
/// lost the same broker do not return in lockstep.
///
/// ```swift
/// var policy = ReconnectPolicy()
/// policy.initialBackoff = .milliseconds(100)
/// policy.maxBackoff = .seconds(10)
/// ```
public struct ReconnectPolicy: Sendable, Hashable {
    /// The ceiling of the first delay. Default 50 ms.
    public var initialBackoff: Duration = .milliseconds(50)
    /// The largest ceiling. Default 5 s.
    public var maxBackoff: Duration = .seconds(5)
    /// How much the ceiling grows per attempt. Default 2.
    public var multiplier: Double = 2
    /// How long to keep trying before an operation fails with a retriable error. Default 30 s.
    public var giveUpAfter: Duration = .seconds(30)

    /// The default policy.
    public init() {}

    /// The delay before attempt `attempt` (0 for the first retry).
    public func delay(attempt: Int) -> Duration {
        let initial = Double(initialBackoff.components.seconds) + Double(initialBackoff.components.attoseconds) * 1e-18
        let maximum = Double(maxBackoff.components.seconds) + Double(maxBackoff.components.attoseconds) * 1e-18
        let ceiling = min(maximum, initial * pow(multiplier, Double(min(attempt, 64))))
        return .nanoseconds(Int64(Double.random(in: 0...max(ceiling, 0.000_001)) * 1e9))
    }

    private func pow(_ base: Double, _ exponent: Double) -> Double {
        var result = 1.0
        for _ in 0..<Int(exponent) {
            result *= base
            if result > 1e12 { break }
        }
        return result
    }
}
