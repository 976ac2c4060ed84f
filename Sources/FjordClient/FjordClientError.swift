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

extension FjordClientError {
    /// A connection that failed for a reason waiting will not fix (TLS trust, certificates).
    static func connectionFailed(_ address: BrokerAddress, _ error: any Error) -> FjordClientError {
        let text = String(describing: error)
        var hint = ""
        if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("certificate verify failed") {
            hint = "; the broker's certificate is not trusted: pass the CA that signed it (--ca FILE or FJORD_CA; for `fjord serve` defaults, DATA_DIR/certs/ca.pem)"
        } else if text.contains("CERTIFICATE_REQUIRED") || text.contains("certificate required") || text.contains("HANDSHAKE_FAILURE") {
            hint = "; the broker may require a client certificate: pass --cert and --key (FJORD_CERT, FJORD_KEY)"
        }
        return FjordClientError(
            code: .unknown, message: "TLS connection to \(address) failed: \(text)\(hint)", isRetriable: false)
    }
}
