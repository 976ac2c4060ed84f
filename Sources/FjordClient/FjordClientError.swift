public import FjordProto
import FjordProtocol

/// A failure reported by the broker (an `Error` message) or by the connection itself.
public struct FjordClientError: Error, Sendable, CustomStringConvertible {
    /// The error code from the broker's table; `.unknown` for local failures.
    public var code: Fjord_V1_ErrorCode
    /// What went wrong.
    public var message: String
    /// Whether the same request may succeed if sent again.
    public var isRetriable: Bool

    /// Creates an error.
    public init(code: Fjord_V1_ErrorCode, message: String, isRetriable: Bool? = nil) {
        self.code = code
        self.message = message
        self.isRetriable = isRetriable ?? code.isRetriable
    }

    init(_ error: Fjord_V1_Error) {
        self.init(code: error.code, message: error.message, isRetriable: error.retriable)
    }

    public var description: String { "\(code.name): \(message)" }
}
