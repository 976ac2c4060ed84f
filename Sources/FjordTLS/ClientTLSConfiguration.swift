#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
public import NIOSSL

/// How a client verifies the server, and the certificate it presents for mutual TLS.
///
/// ```swift
/// let tls = ClientTLSConfiguration(
///     trustRootsPath: "certs/ca.pem",  // nil: the system trust store
///     certificateChainPath: "client.pem", privateKeyPath: "client-key.pem"
/// )
/// let context = try tls.makeContext()  // blocking file I/O: not on an event loop
/// let handler = try NIOSSLClientHandler(
///     context: context, serverHostname: tls.handlerServerHostname(connectingTo: host))
/// ```
public struct ClientTLSConfiguration: Sendable, Hashable {
    /// A PEM bundle of CA certificates the server's certificate must chain to; `nil` uses the system trust store.
    public var trustRootsPath: String?
    /// The PEM file with the client certificate (leaf first), presented when the server asks (mutual TLS).
    public var certificateChainPath: String?
    /// The PEM file with the client certificate's private key; required with ``certificateChainPath``.
    public var privateKeyPath: String?
    /// The name sent in SNI and checked against the server certificate, instead of the host connected to.
    public var serverHostname: String?

    /// Creates a configuration; nothing is read until ``makeContext()``.
    public init(
        trustRootsPath: String? = nil, certificateChainPath: String? = nil, privateKeyPath: String? = nil,
        serverHostname: String? = nil
    ) {
        self.trustRootsPath = trustRootsPath
        self.certificateChainPath = certificateChainPath
        self.privateKeyPath = privateKeyPath
        self.serverHostname = serverHostname
    }

    /// Reads the files and builds the context. Blocking file I/O: call off any event loop.
    ///
    /// The context negotiates TLS 1.2 or 1.3 and fully verifies the server: its certificate must chain to the
    /// trust roots and name the host (see ``handlerServerHostname(connectingTo:)``).
    ///
    /// - Throws: ``TLSConfigurationError`` with `fileNotFound`, `unreadableFile`, `invalidPEM`, `keyMismatch`,
    ///   `invalidArgument` (a certificate without a key or the reverse) or `contextCreation`.
    public func makeContext() throws(TLSConfigurationError) -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.maximumTLSVersion = .tlsv13
        configuration.certificateVerification = .fullVerification
        if let trustRootsPath {
            configuration.trustRoots = .certificates(try PEMFiles.certificates(at: trustRootsPath))
        } else {
            configuration.trustRoots = .default
        }
        switch (certificateChainPath, privateKeyPath) {
        case (nil, nil):
            break
        case (let chainPath?, let keyPath?):
            let chain = try PEMFiles.certificates(at: chainPath)
            let (key, keyPEM) = try PEMFiles.privateKey(at: keyPath)
            try PEMFiles.checkKey(keyPEM, keyPath: keyPath, matches: chain[0], certificatePath: chainPath)
            configuration.certificateChain = chain.map { .certificate($0) }
            configuration.privateKey = .privateKey(key)
        case (let chainPath?, nil):
            throw TLSConfigurationError(
                code: .invalidArgument, message: "a client certificate needs its private key", path: chainPath)
        case (nil, let keyPath?):
            throw TLSConfigurationError(
                code: .invalidArgument, message: "a client private key needs its certificate", path: keyPath)
        }
        return try PEMFiles.makeContext(configuration)
    }

    /// The `serverHostname` to give `NIOSSLClientHandler` when connecting to `host`.
    ///
    /// Returns ``serverHostname`` if set, otherwise `host` — unless that is an IP address literal, which TLS
    /// does not allow in SNI: then `nil`, and NIOSSL checks the server certificate against the IP address of
    /// the connected socket instead.
    ///
    /// Note that NIOSSL accepts a server certificate if *any* of its subject alternative names matches: the
    /// expected name, or an IP address entry equal to the connected socket's address.
    public func handlerServerHostname(connectingTo host: String) -> String? {
        let name = serverHostname ?? host
        return IPAddress.bytes(of: name) == nil ? name : nil
    }
}

/// Parses IP address literals with `inet_pton`.
enum IPAddress {
    /// The 4 (IPv4) or 16 (IPv6) network-order bytes of `text`, or `nil` when it is not an IP address.
    static func bytes(of text: String) -> [UInt8]? {
        // Brackets are common around IPv6 literals in host:port notation.
        var literal = Substring(text)
        if literal.hasPrefix("["), literal.hasSuffix("]") { literal = literal.dropFirst().dropLast() }
        var buffer = [UInt8](repeating: 0, count: 16)
        let family: Int32
        if literal.contains(":") { family = AF_INET6 } else { family = AF_INET }
        let result = String(literal).withCString { text in
            buffer.withUnsafeMutableBytes { inet_pton(family, text, $0.baseAddress) }
        }
        guard result == 1 else { return nil }
        return family == AF_INET ? Array(buffer.prefix(4)) : buffer
    }
}
