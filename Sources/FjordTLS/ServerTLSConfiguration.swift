public import NIOSSL

/// Where a server's TLS material lives, and whether clients must present certificates.
///
/// ```swift
/// let tls = ServerTLSConfiguration(
///     certificateChainPath: "/etc/fjord/server.pem",
///     privateKeyPath: "/etc/fjord/server-key.pem",
///     trustRootsPath: "/etc/fjord/ca.pem",
///     requireClientCertificate: true
/// )
/// let context = try tls.makeContext()  // blocking file I/O: not on an event loop
/// // per accepted channel:
/// try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
/// ```
public struct ServerTLSConfiguration: Sendable, Hashable {
    /// The PEM file with the server certificate first, followed by any intermediates.
    public var certificateChainPath: String
    /// The PEM file with the server certificate's private key (unencrypted).
    public var privateKeyPath: String
    /// A PEM bundle of CA certificates that client certificates must chain to.
    ///
    /// With ``requireClientCertificate`` `false`, clients may still present a certificate, and one that is
    /// presented must verify against these roots.
    public var trustRootsPath: String?
    /// Whether clients must present a certificate signed by ``trustRootsPath`` (mutual TLS).
    public var requireClientCertificate: Bool

    /// Creates a configuration; nothing is read until ``makeContext()``.
    public init(
        certificateChainPath: String, privateKeyPath: String, trustRootsPath: String? = nil,
        requireClientCertificate: Bool = false
    ) {
        self.certificateChainPath = certificateChainPath
        self.privateKeyPath = privateKeyPath
        self.trustRootsPath = trustRootsPath
        self.requireClientCertificate = requireClientCertificate
    }

    /// The TLS 1.2 cipher suites offered: one per certificate key type, ECDHE key exchange with
    /// AES-128-GCM (Mozilla's first choice for TLS 1.2). SwiftNIO SSL has no switch for server cipher
    /// order, so offering a single suite per key type is how the server, not the client, decides:
    /// no CBC, no SHA-1 MAC, no static RSA, nothing a client could be steered down to. TLS 1.3 uses
    /// its own suites (all AEAD), not this list. See `docs/security.md`.
    public static let tls12CipherSuites = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"

    /// Reads the files and builds the context. Blocking file I/O: call off any event loop.
    ///
    /// The context negotiates TLS 1.2 or 1.3, preferring 1.3. With ``requireClientCertificate``, clients
    /// must present a certificate that chains to ``trustRootsPath`` (its name is not checked).
    ///
    /// - Throws: ``TLSConfigurationError`` with `fileNotFound`, `unreadableFile`, `invalidPEM`, `keyMismatch`,
    ///   `missingTrustRoots` (client certificates required without trust roots) or `contextCreation`.
    public func makeContext() throws(TLSConfigurationError) -> NIOSSLContext {
        if requireClientCertificate, trustRootsPath == nil {
            throw TLSConfigurationError(
                code: .missingTrustRoots,
                message: "requiring client certificates needs trust roots (a CA bundle) to verify them")
        }
        let chain = try PEMFiles.certificates(at: certificateChainPath)
        let (key, keyPEM) = try PEMFiles.privateKey(at: privateKeyPath)
        try PEMFiles.checkKey(keyPEM, keyPath: privateKeyPath, matches: chain[0], certificatePath: certificateChainPath)

        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.maximumTLSVersion = .tlsv13
        // TLS 1.2: one forward-secret AEAD suite per key type (see `tls12CipherSuites`).
        configuration.cipherSuites = Self.tls12CipherSuites
        if let trustRootsPath {
            configuration.trustRoots = .certificates(try PEMFiles.certificates(at: trustRootsPath))
            configuration.certificateVerification =
                requireClientCertificate ? .noHostnameVerification : .optionalVerification
            // Tell clients which CAs are accepted, so they can pick a matching certificate.
            configuration.sendCANameList = true
        }
        return try PEMFiles.makeContext(configuration)
    }
}
