import NIOCore
import Synchronization

/// A byte-rate token bucket with no clock of its own (the caller passes the time): the state
/// behind a produce or fetch quota.
///
/// It fills at `bytesPerSecond` up to one second's worth. Bytes spent beyond what it holds are
/// still recorded (a request is never split), and the debt is the throttle: how long until the
/// bucket is back at zero, as Kafka computes `throttle_time_ms`.
///
/// ```swift
/// var bucket = TokenBucket(bytesPerSecond: 1000, now: 0)
/// bucket.spend(1500, now: 0)   // 500 ms: 500 bytes of debt at 1000 bytes/s
/// ```
struct TokenBucket: Sendable, Equatable {
    /// The rate the bucket fills at.
    let bytesPerSecond: Int
    /// Bytes the bucket holds (negative: debt).
    private(set) var tokens: Double
    /// When `tokens` was last brought up to date, in nanoseconds.
    private var updated: Int64

    /// A full bucket at time `now` (nanoseconds on any monotonic clock).
    init(bytesPerSecond: Int, now: Int64) {
        self.bytesPerSecond = max(1, bytesPerSecond)
        self.tokens = Double(self.bytesPerSecond)
        self.updated = now
    }

    /// Whether the bucket is full at `now` (an idle client; its bucket can be forgotten).
    func isFull(now: Int64) -> Bool {
        tokens + Double(max(0, now - updated)) * Double(bytesPerSecond) / 1e9 >= Double(bytesPerSecond)
    }

    /// Spends `bytes` at `now` and returns the throttle in nanoseconds (0 while within the rate).
    mutating func spend(_ bytes: Int, now: Int64) -> Int64 {
        let elapsed = max(0, now - updated)
        updated = max(updated, now)
        let rate = Double(bytesPerSecond)
        // The debt is capped at `maximumThrottleSeconds` of the rate (Kafka caps its throttle at
        // the quota window too): one huge batch costs a bounded pause, never hours of it, and the
        // arithmetic below stays far from overflow whatever sizes a client sends.
        tokens = max(-rate * Self.maximumThrottleSeconds, min(rate, tokens + Double(elapsed) * rate / 1e9) - Double(bytes))
        guard tokens < 0 else { return 0 }
        return Int64((-tokens / rate * 1e9).rounded(.up))
    }

    /// The longest throttle one bucket can owe.
    static let maximumThrottleSeconds = 30.0
}

/// The produce and fetch byte-rate quotas of every client id (`quota.producer.bytes.per.sec`,
/// `quota.consumer.bytes.per.sec`), shared by all connections: connections with the same client
/// id share one bucket, as Kafka's quotas per client id do.
final class ClientQuotas: Sendable {
    /// Which quota.
    enum Kind: Sendable {
        case produce
        case fetch
    }

    private struct Key: Hashable {
        var kind: Kind
        var clientID: String
    }

    private let producerRate: Int
    private let consumerRate: Int
    private let clock: @Sendable () -> Int64
    private struct Buckets {
        var byKey: [Key: TokenBucket] = [:]
        /// Buckets left after the last sweep: the next sweep waits until there are twice as many
        /// (and at least `sweepThreshold`), so a client rotating ids cannot make every call a scan.
        var keptAtLastSweep = 0
    }
    private let buckets = Mutex(Buckets())
    /// Buckets kept before full (idle) ones are forgotten.
    static let sweepThreshold = 10_000

    /// Quotas of `producerBytesPerSecond` and `consumerBytesPerSecond` (0: none) with `clock`
    /// giving monotonic nanoseconds.
    init(
        producerBytesPerSecond: Int, consumerBytesPerSecond: Int,
        clock: @escaping @Sendable () -> Int64 = { Int64(NIODeadline.now().uptimeNanoseconds) }
    ) {
        self.producerRate = producerBytesPerSecond
        self.consumerRate = consumerBytesPerSecond
        self.clock = clock
    }

    /// Whether any quota is configured.
    var isEnabled: Bool { producerRate > 0 || consumerRate > 0 }

    /// Records `bytes` of `kind` for `clientID`; returns the throttle in milliseconds (0 when within
    /// the quota or when that quota is off).
    func record(_ kind: Kind, clientID: String, bytes: Int) -> UInt32 {
        let rate = kind == .produce ? producerRate : consumerRate
        guard rate > 0, bytes > 0 else { return 0 }
        let now = clock()
        let key = Key(kind: kind, clientID: clientID)
        let nanoseconds = buckets.withLock { buckets in
            if buckets.byKey[key] == nil, buckets.byKey.count >= max(Self.sweepThreshold, 2 * buckets.keptAtLastSweep) {
                buckets.byKey = buckets.byKey.filter { !$0.value.isFull(now: now) }
                buckets.keptAtLastSweep = buckets.byKey.count
            }
            return buckets.byKey[key, default: TokenBucket(bytesPerSecond: rate, now: now)].spend(bytes, now: now)
        }
        return UInt32(clamping: (nanoseconds + 999_999) / 1_000_000)
    }
}
