public import FjordProto

extension Fjord_V1_ErrorCode {
    /// Whether a request that failed with this code may succeed if sent again (the table in `errors.proto`).
    public var isRetriable: Bool {
        switch self {
        case .tooManyConnections, .brokerShuttingDown, .requestTimedOut, .unknownTopicOrPartition,
            .fencedLeaderEpoch, .unknownLeaderEpoch, .notLeader, .diskFull, .storageError:
            return true
        default:
            return false
        }
    }

    /// The code's name as in the proto, without the `ERROR_CODE_` prefix (for logs and metrics).
    public var name: String {
        switch self {
        case .none: "NONE"
        case .unknown: "UNKNOWN"
        case .malformedFrame: "MALFORMED_FRAME"
        case .frameTooLarge: "FRAME_TOO_LARGE"
        case .malformedMessage: "MALFORMED_MESSAGE"
        case .handshakeRequired: "HANDSHAKE_REQUIRED"
        case .unsupportedVersion: "UNSUPPORTED_VERSION"
        case .unknownMethod: "UNKNOWN_METHOD"
        case .invalidStream: "INVALID_STREAM"
        case .invalidRequest: "INVALID_REQUEST"
        case .tooManyConnections: "TOO_MANY_CONNECTIONS"
        case .brokerShuttingDown: "BROKER_SHUTTING_DOWN"
        case .requestTimedOut: "REQUEST_TIMED_OUT"
        case .unknownTopicOrPartition: "UNKNOWN_TOPIC_OR_PARTITION"
        case .topicAlreadyExists: "TOPIC_ALREADY_EXISTS"
        case .invalidTopic: "INVALID_TOPIC"
        case .invalidPartitions: "INVALID_PARTITIONS"
        case .invalidConfig: "INVALID_CONFIG"
        case .fencedLeaderEpoch: "FENCED_LEADER_EPOCH"
        case .unknownLeaderEpoch: "UNKNOWN_LEADER_EPOCH"
        case .notLeader: "NOT_LEADER"
        case .corruptBatch: "CORRUPT_BATCH"
        case .batchTooLarge: "BATCH_TOO_LARGE"
        case .unsupportedCompression: "UNSUPPORTED_COMPRESSION"
        case .outOfOrderSequence: "OUT_OF_ORDER_SEQUENCE"
        case .invalidProducerEpoch: "INVALID_PRODUCER_EPOCH"
        case .unknownProducerID: "UNKNOWN_PRODUCER_ID"
        case .offsetOutOfRange: "OFFSET_OUT_OF_RANGE"
        case .diskFull: "DISK_FULL"
        case .storageError: "STORAGE_ERROR"
        case .corruptLog: "CORRUPT_LOG"
        case .logTailLost: "LOG_TAIL_LOST"
        case .topicAuthorizationFailed: "TOPIC_AUTHORIZATION_FAILED"
        case .groupAuthorizationFailed: "GROUP_AUTHORIZATION_FAILED"
        case .clusterAuthorizationFailed: "CLUSTER_AUTHORIZATION_FAILED"
        case .authenticationFailed: "AUTHENTICATION_FAILED"
        case .UNRECOGNIZED(let value): "UNRECOGNIZED(\(value))"
        }
    }
}
