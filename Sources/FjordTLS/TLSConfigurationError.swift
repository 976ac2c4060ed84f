/// An error from loading, generating or writing TLS material, with the file it concerns.
///
/// ```swift
/// do {
///     let context = try ServerTLSConfiguration(
///         certificateChainPath: "certs/server.pem", privateKeyPath: "certs/server-key.pem"
///     ).makeContext()
/// } catch where error.code == .fileNotFound {
///     print("missing: \(error.path ?? "?")")
/// } catch {
///     print(error)  // "invalidPEM: … [file: certs/server.pem] (underlying error)"
/// }
/// ```
public struct TLSConfigurationError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure. New codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Value: String, Sendable, Hashable {
            case fileNotFound, unreadableFile, unwritableFile, invalidPEM, keyMismatch, missingTrustRoots
            case notCertificateAuthority, certificateGeneration, invalidArgument, contextCreation
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// A file does not exist (ENOENT).
        public static let fileNotFound = Code(.fileNotFound)
        /// A file exists but cannot be read: permissions, a directory, too large, or another I/O failure.
        public static let unreadableFile = Code(.unreadableFile)
        /// A file or directory cannot be created or written.
        public static let unwritableFile = Code(.unwritableFile)
        /// A file holds no usable PEM certificate or private key (garbage, wrong type, encrypted key).
        public static let invalidPEM = Code(.invalidPEM)
        /// The private key does not belong to the certificate it is paired with.
        public static let keyMismatch = Code(.keyMismatch)
        /// Client certificates are required but no trust roots were configured to verify them.
        public static let missingTrustRoots = Code(.missingTrustRoots)
        /// A certificate loaded as a certificate authority is not marked as one (basicConstraints CA:true).
        public static let notCertificateAuthority = Code(.notCertificateAuthority)
        /// Creating, signing or encoding a certificate or key failed.
        public static let certificateGeneration = Code(.certificateGeneration)
        /// An argument is unusable, such as an IP address that does not parse.
        public static let invalidArgument = Code(.invalidArgument)
        /// BoringSSL refused the configuration when building the `NIOSSLContext`.
        public static let contextCreation = Code(.contextCreation)

        /// The code's name, such as `fileNotFound`.
        public var description: String { value.rawValue }
    }

    /// The kind of failure.
    public var code: Code
    /// What happened, for people.
    public var message: String
    /// The file or directory concerned, when there is one.
    public var path: String?
    /// A description of the error that caused this one (a system error, a parser or BoringSSL error).
    public var underlyingErrorDescription: String?

    /// Creates an error.
    public init(code: Code, message: String, path: String? = nil, underlyingErrorDescription: String? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.underlyingErrorDescription = underlyingErrorDescription
    }

    /// The code, message, path and underlying error on one line.
    public var description: String {
        var text = "\(code): \(message)"
        if let path { text += " [file: \(path)]" }
        if let underlyingErrorDescription { text += " (\(underlyingErrorDescription))" }
        return text
    }
}

extension TLSConfigurationError {
    /// Wraps an error thrown by a library, keeping its description.
    static func wrapping(
        _ code: Code, _ message: String, path: String? = nil, _ error: any Error
    ) -> TLSConfigurationError {
        TLSConfigurationError(
            code: code, message: message, path: path, underlyingErrorDescription: String(describing: error))
    }
}
