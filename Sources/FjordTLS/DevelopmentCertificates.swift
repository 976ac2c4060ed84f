#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SystemPackage

/// The certificates `fjord serve` uses when no TLS material is configured: a development CA and a server
/// certificate it issued, kept in one directory and generated on first start.
///
/// ```swift
/// let certificates = try DevelopmentCertificates.ensure(in: dataDirectory + "/tls")
/// if certificates.generated {
///     print("generated a development CA; clients should trust \(certificates.caCertificatePath)")
/// }
/// let context = try ServerTLSConfiguration(
///     certificateChainPath: certificates.serverCertificatePath,
///     privateKeyPath: certificates.serverPrivateKeyPath
/// ).makeContext()
/// ```
public struct DevelopmentCertificates: Sendable, Hashable {
    /// The CA certificate (`ca.pem`): the trust root for clients.
    public var caCertificatePath: String
    /// The CA private key (`ca-key.pem`, mode 0600), for issuing more certificates.
    public var caPrivateKeyPath: String
    /// The server certificate (`server.pem`).
    public var serverCertificatePath: String
    /// The server private key (`server-key.pem`, mode 0600).
    public var serverPrivateKeyPath: String
    /// Whether ``ensure(in:extraDNSNames:extraIPAddresses:)`` generated the files on this call.
    public var generated: Bool

    /// Makes sure `directory` holds `ca.pem`, `ca-key.pem`, `server.pem` and `server-key.pem`.
    ///
    /// Creates the directory (mode 0700) if it is missing. If all four files are present they are kept as they
    /// are (`generated == false`). If the CA is there but a server file is missing, a new server certificate is
    /// issued by that CA. If `ca.pem` is missing, a new CA and server certificate are generated and all four
    /// files written. `ca.pem` without `ca-key.pem` is refused: a new CA would break every client that trusts
    /// the old one. The server certificate names `localhost`, this machine's
    /// host name, `127.0.0.1`, `::1` and the extra names and addresses. Blocking file I/O.
    ///
    /// - Throws: ``TLSConfigurationError`` with `unwritableFile`, `invalidArgument` (an extra IP address that
    ///   does not parse) or `certificateGeneration`.
    public static func ensure(
        in directory: String, extraDNSNames: [String] = [], extraIPAddresses: [String] = []
    ) throws(TLSConfigurationError) -> DevelopmentCertificates {
        var result = DevelopmentCertificates(
            caCertificatePath: FileIO.join(directory, "ca.pem"),
            caPrivateKeyPath: FileIO.join(directory, "ca-key.pem"),
            serverCertificatePath: FileIO.join(directory, "server.pem"),
            serverPrivateKeyPath: FileIO.join(directory, "server-key.pem"),
            generated: false)
        try FileIO.makeDirectory(directory, permissions: [.ownerReadWriteExecute])
        let paths = [
            result.caCertificatePath, result.caPrivateKeyPath, result.serverCertificatePath,
            result.serverPrivateKeyPath,
        ]
        if paths.allSatisfy(FileIO.isRegularFile) { return result }

        // Clients may already trust `ca.pem`: never replace it behind their back. The CA writes its
        // key before its certificate, so `ca.pem` without `ca-key.pem` means the key was removed.
        let ca: CertificateAuthority
        let newCA: Bool
        switch (FileIO.isRegularFile(result.caCertificatePath), FileIO.isRegularFile(result.caPrivateKeyPath)) {
        case (true, false):
            throw TLSConfigurationError(
                code: .fileNotFound,
                message: "\(result.caCertificatePath) exists but its private key \(result.caPrivateKeyPath) is missing, so no "
                    + "server certificate can be issued that clients trusting ca.pem accept; restore ca-key.pem, or remove "
                    + "ca.pem too to generate a new development CA (every client must then trust the new ca.pem)")
        case (true, true):
            // Only server files are missing: issue them again from the CA clients already trust.
            ca = try CertificateAuthority(certificatePath: result.caCertificatePath, privateKeyPath: result.caPrivateKeyPath)
            newCA = false
        case (false, _):
            ca = try CertificateAuthority.generate()
            newCA = true
        }
        let dnsNames = unique(["localhost"] + (hostName().map { [$0] } ?? []) + extraDNSNames)
        let ipAddresses = unique(["127.0.0.1", "::1"] + extraIPAddresses)
        let server = try ca.issueServerCertificate(
            commonName: hostName() ?? "localhost", dnsNames: dnsNames, ipAddresses: ipAddresses)
        // The server files go first: if writing stops half-way, the CA files are missing and the next call
        // generates everything again rather than keeping a server certificate no CA file vouches for.
        try server.write(to: directory, name: "server")
        if newCA { try ca.write(to: directory) }
        result.generated = true
        return result
    }

    /// This machine's host name, if it is a plausible DNS name other than `localhost`.
    static func hostName() -> String? {
        let capacity = 256
        var buffer = [CChar](repeating: 0, count: capacity)
        guard gethostname(&buffer, capacity - 1) == 0 else { return nil }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let allowed = name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
        }
        guard !name.isEmpty, allowed, name.lowercased() != "localhost" else { return nil }
        return name
    }

    private static func unique(_ names: [String]) -> [String] {
        var seen = Set<String>()
        return names.filter { seen.insert($0.lowercased()).inserted }
    }
}
