/// Why the byte stream is not a valid sequence of frames. The connection cannot continue.
public struct FrameError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure. New codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Value: String, Sendable, Hashable {
            case oversizeFrame, malformedHeader, truncatedFrame, unsupportedPayloadPart
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The header announces a payload over the negotiated maximum; rejected before buffering it.
        public static let oversizeFrame = Code(.oversizeFrame)
        /// Unknown flag bits or a non-zero reserved byte.
        public static let malformedHeader = Code(.malformedHeader)
        /// The connection ended inside a frame.
        public static let truncatedFrame = Code(.truncatedFrame)
        /// A frame to send has a part the channel cannot carry (a file region where TLS must
        /// encrypt from memory); the encoder closes the channel.
        public static let unsupportedPayloadPart = Code(.unsupportedPayloadPart)

        public var description: String { value.rawValue }
    }

    /// The kind of failure.
    public var code: Code
    /// What exactly was wrong.
    public var message: String

    /// Creates an error.
    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    static let fileRegionOnEncryptedChannel = FrameError(
        code: .unsupportedPayloadPart,
        message: "a file region reached a FrameEncoder that does not allow them (TLS encrypts from memory)")
}
