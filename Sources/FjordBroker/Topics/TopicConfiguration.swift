import FjordProto
public import FjordStorage

/// A topic's configuration overrides, by Kafka's key names, and the log settings they give.
///
/// | key | meaning | default |
/// |---|---|---|
/// | `retention.ms` | delete segments older than this; `-1` keeps forever | 604800000 (7 days) |
/// | `retention.bytes` | delete the oldest segments while a partition is larger; `-1` no limit | -1 |
/// | `segment.bytes` | roll the active segment at this size | 1073741824 (1 GiB) |
/// | `segment.ms` | roll the active segment at this age | 604800000 |
/// | `max.message.bytes` | largest record batch accepted | 4194304 (4 MiB) |
/// | `flush.ms` | fsync at most this long after a write; `0` after every batch; unset: the OS decides | unset |
/// | `message.timestamp.type` | `CreateTime` or `LogAppendTime` | CreateTime |
///
/// ```swift
/// let config = try TopicConfiguration(overrides: ["retention.ms": "3600000"])
/// let log = config.logConfiguration(base: LogConfiguration())
/// ```
public struct TopicConfiguration: Sendable, Hashable {
    /// The keys a topic accepts.
    public static let knownKeys: [String] = [
        "retention.ms", "retention.bytes", "segment.bytes", "segment.ms", "max.message.bytes", "flush.ms",
        "message.timestamp.type",
    ]

    /// The overrides, validated.
    public private(set) var overrides: [String: String]

    /// Validates `overrides`.
    ///
    /// - Throws: ``BrokerError`` with `INVALID_CONFIG` naming the key and the value.
    public init(overrides: [String: String] = [:]) throws(BrokerError) {
        self.overrides = overrides
        // Applying every key checks each value; validating checks the combination.
        _ = try logConfiguration(base: LogConfiguration(), validate: true)
    }

    /// The log settings: `base` (the broker's defaults) with the overrides applied.
    public func logConfiguration(base: LogConfiguration) -> LogConfiguration {
        (try? logConfiguration(base: base, validate: false)) ?? base
    }

    private func logConfiguration(base: LogConfiguration, validate: Bool) throws(BrokerError) -> LogConfiguration {
        var configuration = base
        for key in overrides.keys.sorted() {
            try Self.apply(key, overrides[key]!, to: &configuration)
        }
        if validate {
            do { try configuration.validate() } catch { throw BrokerError(.invalidConfig, error.message) }
        }
        return configuration
    }

    /// Applies or removes overrides, returning the new configuration.
    public func altered(set: [String: String], remove: [String]) throws(BrokerError) -> TopicConfiguration {
        var overrides = self.overrides
        for key in remove {
            guard Self.knownKeys.contains(key) else {
                throw BrokerError(.invalidConfig, "unknown topic configuration key \"\(key)\"; known keys: \(Self.knownKeys.joined(separator: ", "))")
            }
            overrides[key] = nil
        }
        overrides.merge(set) { $1 }
        return try TopicConfiguration(overrides: overrides)
    }

    private static func apply(_ key: String, _ value: String, to configuration: inout LogConfiguration) throws(BrokerError) {
        func integer(minimum: Int64) throws(BrokerError) -> Int64 {
            guard let number = Int64(value), number >= minimum else {
                throw BrokerError(.invalidConfig, "\(key) must be an integer of at least \(minimum), not \"\(value)\"")
            }
            return number
        }
        switch key {
        case "retention.ms":
            let ms = try integer(minimum: -1)
            guard ms != 0 else { throw BrokerError(.invalidConfig, "retention.ms must be positive or -1, not 0") }
            configuration.retention.milliseconds = ms < 0 ? nil : ms
        case "retention.bytes":
            let bytes = try integer(minimum: -1)
            configuration.retention.bytes = bytes < 0 ? nil : bytes
        case "segment.bytes":
            configuration.segmentBytes = Int(try integer(minimum: 1024))
        case "segment.ms":
            configuration.segmentMilliseconds = try integer(minimum: 1)
        case "max.message.bytes":
            configuration.maxBatchBytes = Int(try integer(minimum: 128))
        case "flush.ms":
            let ms = try integer(minimum: 0)
            configuration.flushPolicy = ms == 0 ? .everyBatch : .interval(milliseconds: ms)
        case "message.timestamp.type":
            switch value {
            case "CreateTime": configuration.timestampType = .createTime
            case "LogAppendTime": configuration.timestampType = .logAppendTime
            default:
                throw BrokerError(.invalidConfig, "message.timestamp.type must be CreateTime or LogAppendTime, not \"\(value)\"")
            }
        default:
            throw BrokerError(
                .invalidConfig, "unknown topic configuration key \"\(key)\"; known keys: \(knownKeys.joined(separator: ", "))")
        }
    }
}
