/// Why a record batch was rejected.
///
/// ```swift
/// do {
///     _ = try RecordBatchValidator(maxBatchBytes: 1 << 20).validate(bytes)
/// } catch let error where error.code == .crcMismatch {
///     // the batch was damaged in transit
/// }
/// ```
public struct RecordBatchError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure. New codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Value: String, Sendable, Hashable {
            case tooSmall, tooLarge, malformedHeader, unsupportedMagic, unsupportedCompression
            case crcMismatch, emptyBatch, recordCountMismatch, malformedRecords, invalidTimestamps
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// Shorter than the 80-byte header.
        public static let tooSmall = Code(.tooSmall)
        /// Larger than the configured maximum batch size.
        public static let tooLarge = Code(.tooLarge)
        /// A header tag is missing or out of place.
        public static let malformedHeader = Code(.malformedHeader)
        /// A format version this build does not understand.
        public static let unsupportedMagic = Code(.unsupportedMagic)
        /// A compression codec this build does not support.
        public static let unsupportedCompression = Code(.unsupportedCompression)
        /// The stored CRC32C does not match the content.
        public static let crcMismatch = Code(.crcMismatch)
        /// The batch declares zero records.
        public static let emptyBatch = Code(.emptyBatch)
        /// The number of records differs from `record_count`.
        public static let recordCountMismatch = Code(.recordCountMismatch)
        /// The records are not well-formed protobuf.
        public static let malformedRecords = Code(.malformedRecords)
        /// `max_timestamp` is below `first_timestamp`.
        public static let invalidTimestamps = Code(.invalidTimestamps)

        public var description: String { value.rawValue }
    }

    /// The kind of failure.
    public var code: Code
    /// What exactly was wrong, for people.
    public var message: String

    /// Creates an error.
    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
