/// One record: optional key, optional value, headers and a timestamp.
///
/// ```swift
/// let record = Record(key: Array("user-42".utf8), value: Array("{\"clicks\":3}".utf8), timestamp: now)
/// ```
public struct Record: Sendable, Hashable {
    /// The key; `nil` is a null key, which differs from an empty one.
    public var key: [UInt8]?
    /// The value; `nil` is a null value (a tombstone).
    public var value: [UInt8]?
    /// Application headers, in order.
    public var headers: [RecordHeader]
    /// Milliseconds since the Unix epoch.
    public var timestamp: Int64

    /// Creates a record.
    public init(key: [UInt8]? = nil, value: [UInt8]?, headers: [RecordHeader] = [], timestamp: Int64) {
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }
}

/// An application header of a ``Record``.
public struct RecordHeader: Sendable, Hashable {
    /// The header name.
    public var key: String
    /// The header value; `nil` is a null value.
    public var value: [UInt8]?

    /// Creates a header.
    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }
}
