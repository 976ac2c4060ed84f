public import FjordProto
import FjordProtocol
import FjordRecords
import FjordStorage

/// An error the broker reports to a client: a code from the error table in `proto/fjord/v1/errors.proto`
/// and a message with the values involved.
///
/// ```swift
/// throw BrokerError(.unknownTopicOrPartition, "topic \"orders\" has no partition 7 (it has 3)")
/// ```
public struct BrokerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The code from the stable table.
    public var code: Fjord_V1_ErrorCode
    /// What went wrong, for people.
    public var message: String

    /// Creates an error.
    public init(_ code: Fjord_V1_ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    /// Whether the same request may succeed if sent again.
    public var isRetriable: Bool { code.isRetriable }

    /// The error as the `Error` message sent to clients.
    public var wireValue: Fjord_V1_Error {
        var error = Fjord_V1_Error()
        error.code = code
        error.message = message
        error.retriable = isRetriable
        return error
    }

    public var description: String { "\(code.name): \(message)" }
}

extension BrokerError {
    /// Maps a storage failure to the code a client can act on.
    init(_ error: StorageError, topic: String, partition: Int) {
        let what = "\(topic)-\(partition)"
        switch error.code {
        case .offsetOutOfRange:
            self.init(.offsetOutOfRange, "\(what): \(error.message)")
        case .invalidBatch:
            switch error.batchError?.code {
            case .tooLarge?: self.init(.batchTooLarge, "\(what): \(error.batchError?.message ?? error.message)")
            case .unsupportedCompression?:
                self.init(.unsupportedCompression, "\(what): \(error.batchError?.message ?? error.message)")
            default: self.init(.corruptBatch, "\(what): \(error.batchError?.description ?? error.message)")
            }
        case .outOfOrderSequence:
            self.init(.outOfOrderSequence, "\(what): \(error.message)")
        case .invalidProducerEpoch:
            self.init(.invalidProducerEpoch, "\(what): \(error.message)")
        case .unknownProducerID:
            self.init(.unknownProducerID, "\(what): \(error.message)")
        case .invalidArgument:
            self.init(.invalidRequest, "\(what): \(error.message)")
        case .diskFull:
            self.init(.diskFull, "\(what): the disk holding the log is full; nothing was appended")
        case .logClosed:
            self.init(
                .notLeader,
                "\(what): the partition's log was closed (topic deleted or reconfigured, or the broker is stopping); refresh metadata and retry"
            )
        case .corruptSegment:
            self.init(.corruptLog, "\(what) is offline: \(error)")
        case .logTailLost:
            self.init(.logTailLost, "\(what) is offline: \(error)")
        default:
            self.init(.storageError, "\(what): \(error)")
        }
    }

    /// The error a partition whose log could not be opened answers with: damage and lost tails
    /// keep their own (non-retriable) codes, anything else is a retriable `STORAGE_ERROR`.
    init(offline error: StorageError, topic: String, partition: Int) {
        switch error.code {
        case .corruptSegment, .logTailLost: self.init(error, topic: topic, partition: partition)
        default: self.init(.storageError, "\(topic)-\(partition) is offline: \(error)")
        }
    }
}
