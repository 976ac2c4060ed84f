public import FjordRecords
public import SystemPackage

/// An error from the storage layer, with the file it concerns.
///
/// ```swift
/// do {
///     _ = try log.read(from: 42, maxBytes: 1 << 20)
/// } catch let error as StorageError where error.code == .offsetOutOfRange {
///     print(error.logStartOffset!, error.logEndOffset!)
/// }
/// ```
public struct StorageError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure. New codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Value: String, Sendable, Hashable {
            case offsetOutOfRange, invalidBatch, diskFull, permissionDenied, ioError, corruptSegment
            case invalidConfiguration, logClosed, invalidArgument
            case outOfOrderSequence, invalidProducerEpoch, unknownProducerID, logTailLost
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The requested offset is below the log start or beyond the log end.
        public static let offsetOutOfRange = Code(.offsetOutOfRange)
        /// The batch failed validation; ``StorageError/batchError`` says why.
        public static let invalidBatch = Code(.invalidBatch)
        /// No space left on the device (ENOSPC, EDQUOT). The log is unchanged and usable once space is back.
        public static let diskFull = Code(.diskFull)
        /// The process may not read or write a file (EACCES, EPERM, EROFS).
        public static let permissionDenied = Code(.permissionDenied)
        /// Any other failed system call.
        public static let ioError = Code(.ioError)
        /// Stored data failed verification (CRC32C, frame, offset continuity, leader epochs, index):
        /// it is never served, and the log is offline until an operator repairs it
        /// (`fjord log repair --truncate-after-damage`).
        public static let corruptSegment = Code(.corruptSegment)
        /// The log ends below an offset it had made durable (the end recorded at a clean close, or
        /// the recovery point after a crash): acknowledged records are missing. The log stays
        /// offline until an operator accepts the loss (`fjord log repair --accept-lost-tail`).
        public static let logTailLost = Code(.logTailLost)
        /// A configuration value is out of range.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// The log has been closed.
        public static let logClosed = Code(.logClosed)
        /// An argument is out of range.
        public static let invalidArgument = Code(.invalidArgument)
        /// An idempotent producer's batch skips or repeats sequence numbers (and is not a retry of a
        /// remembered batch).
        public static let outOfOrderSequence = Code(.outOfOrderSequence)
        /// An idempotent producer's epoch is older than one that already wrote to the log.
        public static let invalidProducerEpoch = Code(.invalidProducerEpoch)
        /// The log has no state for this producer id and the batch does not start at sequence 0.
        public static let unknownProducerID = Code(.unknownProducerID)

        public var description: String { value.rawValue }
    }

    /// The kind of failure.
    public var code: Code
    /// What happened, for people.
    public var message: String
    /// The file concerned, when there is one.
    public var path: FilePath?
    /// The byte position in ``path`` where the problem is, for corrupt data.
    public var position: Int?
    /// The system error, for failed system calls.
    public var errno: Errno?
    /// The validation failure, for ``Code/invalidBatch``.
    public var batchError: RecordBatchError?
    /// The log start offset, for ``Code/offsetOutOfRange``.
    public var logStartOffset: Int64?
    /// The log end offset, for ``Code/offsetOutOfRange``.
    public var logEndOffset: Int64?
    /// The first offset the damage makes unservable, for ``Code/corruptSegment`` found by a read,
    /// and the first missing offset for ``Code/logTailLost``.
    public var firstAffectedOffset: Int64?
    /// Where the error was raised.
    public var location: String

    /// Creates an error.
    public init(
        code: Code, message: String, path: FilePath? = nil, position: Int? = nil, errno: Errno? = nil,
        file: String = #fileID, line: Int = #line
    ) {
        self.code = code
        self.message = message
        self.path = path
        self.position = position
        self.errno = errno
        self.location = "\(file):\(line)"
    }

    public var description: String {
        var text = "\(code): \(message)"
        if let path { text += " [file: \(path)" + (position.map { " at byte \($0)" } ?? "") + "]" }
        if let errno { text += " (\(errno))" }
        return text
    }

    /// Maps a failed system call to a storage error, classifying space and permission failures.
    static func systemCall(
        _ call: String, _ errno: Errno, path: FilePath, file: String = #fileID, line: Int = #line
    ) -> StorageError {
        let code: Code
        switch errno {
        case .noSpace, .diskQuotaExceeded: code = .diskFull
        case .permissionDenied, .notPermitted, .readOnlyFileSystem: code = .permissionDenied
        default: code = .ioError
        }
        return StorageError(
            code: code, message: "\(call) failed", path: path, errno: errno, file: file, line: line)
    }
}

extension StorageError {
    static func invalidBatch(_ error: RecordBatchError, file: String = #fileID, line: Int = #line) -> StorageError {
        var result = StorageError(
            code: .invalidBatch, message: "invalid record batch: \(error)", file: file, line: line)
        result.batchError = error
        return result
    }

    static func outOfRange(_ offset: Int64, start: Int64, end: Int64) -> StorageError {
        var result = StorageError(
            code: .offsetOutOfRange,
            message: "offset \(offset) is outside the log, which holds offsets \(start) to \(end - 1) (log end \(end))")
        result.logStartOffset = start
        result.logEndOffset = end
        return result
    }
}
