import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SwiftASN1
import SystemPackage
import X509

/// A certificate authority for development: a self-signed CA certificate and its private key, which
/// issues server and client certificates. Keys are P-256 ECDSA, signatures ECDSA with SHA-256.
///
/// ```swift
/// let ca = try CertificateAuthority.generate()
/// try ca.write(to: "certs")                                   // certs/ca.pem, certs/ca-key.pem
/// try ca.issueServerCertificate(commonName: "broker-1", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
///     .write(to: "certs", name: "server")                     // certs/server.pem, certs/server-key.pem
/// try ca.issueClientCertificate(commonName: "alice").write(to: "certs", name: "alice")
/// ```
///
/// This is not a production CA: there is no revocation, and anyone holding `ca-key.pem` can issue
/// certificates that every peer trusting `ca.pem` accepts.
public struct CertificateAuthority: Sendable {
    /// How long a generated CA certificate is valid.
    static let caValidity: TimeInterval = 10 * 365.25 * 24 * 3600
    /// How long an issued leaf certificate is valid.
    static let leafValidity: TimeInterval = 2 * 365.25 * 24 * 3600
    /// How far in the past validity starts, to tolerate clock skew between machines.
    static let backdating: TimeInterval = 3600

    private let certificate: Certificate
    private let privateKey: Certificate.PrivateKey

    /// The CA certificate, PEM-encoded: the trust root to give servers and clients.
    public let certificatePEM: String
    /// The CA's private key, PEM-encoded (PKCS #8). Keep it secret.
    public let privateKeyPEM: String

    private init(certificate: Certificate, privateKey: Certificate.PrivateKey) throws(TLSConfigurationError) {
        self.certificate = certificate
        self.privateKey = privateKey
        self.certificatePEM = try PEM.encode(certificate)
        self.privateKeyPEM = try PEM.encode(privateKey)
    }

    /// Generates a new self-signed CA, valid for about 10 years from an hour ago.
    ///
    /// The certificate has basicConstraints CA:true (critical), keyUsage keyCertSign and cRLSign (critical)
    /// and a subject key identifier.
    ///
    /// - Parameter commonName: The CA's subject common name (CN).
    /// - Throws: ``TLSConfigurationError`` with `certificateGeneration`.
    public static func generate(commonName: String = "Fjord development CA") throws(TLSConfigurationError)
        -> CertificateAuthority
    {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let now = Date()
        let certificate: Certificate
        do {
            let name = try DistinguishedName { CommonName(commonName) }
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(keyIdentifier: keyIdentifier(of: key.publicKey))
            }
            certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
                notValidBefore: now - backdating, notValidAfter: now + caValidity,
                issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: extensions, issuerPrivateKey: key)
        } catch {
            throw TLSConfigurationError.wrapping(.certificateGeneration, "cannot create the CA certificate", error)
        }
        return try CertificateAuthority(certificate: certificate, privateKey: key)
    }

    /// Loads a CA from PEM files: its certificate and its (unencrypted) private key.
    ///
    /// - Throws: ``TLSConfigurationError`` with `fileNotFound`, `unreadableFile`, `invalidPEM`, `keyMismatch`
    ///   or `notCertificateAuthority` (the certificate lacks basicConstraints CA:true).
    public init(certificatePath: String, privateKeyPath: String) throws(TLSConfigurationError) {
        let certificateText = String(decoding: try FileIO.read(certificatePath), as: UTF8.self)
        let keyText = String(decoding: try FileIO.read(privateKeyPath), as: UTF8.self)
        let certificate: Certificate
        let privateKey: Certificate.PrivateKey
        do {
            certificate = try Certificate(pemEncoded: certificateText)
        } catch {
            throw TLSConfigurationError.wrapping(
                .invalidPEM, "no valid PEM certificate", path: certificatePath, error)
        }
        do {
            privateKey = try Certificate.PrivateKey(pemEncoded: keyText)
        } catch {
            throw TLSConfigurationError.wrapping(
                .invalidPEM, "no valid unencrypted PEM private key", path: privateKeyPath, error)
        }
        guard certificate.publicKey == privateKey.publicKey else {
            throw TLSConfigurationError(
                code: .keyMismatch, message: "the private key does not belong to the CA certificate",
                path: privateKeyPath)
        }
        guard case .isCertificateAuthority = try? certificate.extensions.basicConstraints else {
            throw TLSConfigurationError(
                code: .notCertificateAuthority, message: "the certificate is not a certificate authority",
                path: certificatePath)
        }
        try self.init(certificate: certificate, privateKey: privateKey)
    }

    /// Issues a server certificate valid for about 2 years from an hour ago.
    ///
    /// The subject alternative names are `dnsNames` followed by `ipAddresses`; the extended key usage is
    /// serverAuth. Clients verify the server against these names, not the common name.
    ///
    /// - Parameters:
    ///   - commonName: The subject common name (CN), for people.
    ///   - dnsNames: Host names, such as `"localhost"` or `"broker-1.example.com"`.
    ///   - ipAddresses: IPv4 or IPv6 address literals, such as `"127.0.0.1"` or `"::1"`.
    /// - Throws: ``TLSConfigurationError`` with `invalidArgument` (an address that does not parse, or no names
    ///   at all) or `certificateGeneration`.
    public func issueServerCertificate(
        commonName: String, dnsNames: [String], ipAddresses: [String]
    ) throws(TLSConfigurationError) -> IssuedCertificate {
        var names = dnsNames.map { GeneralName.dnsName($0) }
        for address in ipAddresses {
            guard let bytes = IPAddress.bytes(of: address) else {
                throw TLSConfigurationError(
                    code: .invalidArgument, message: "\"\(address)\" is not an IPv4 or IPv6 address")
            }
            names.append(.ipAddress(ASN1OctetString(contentBytes: bytes[...])))
        }
        guard !names.isEmpty else {
            throw TLSConfigurationError(
                code: .invalidArgument, message: "a server certificate needs at least one DNS name or IP address")
        }
        return try issue(commonName: commonName, usage: .serverAuth, alternativeNames: names)
    }

    /// Issues a client certificate for mutual TLS, valid for about 2 years from an hour ago.
    ///
    /// The extended key usage is clientAuth; the common name identifies the client.
    ///
    /// - Throws: ``TLSConfigurationError`` with `certificateGeneration`.
    public func issueClientCertificate(commonName: String, uris: [String] = []) throws(TLSConfigurationError) -> IssuedCertificate {
        try issue(commonName: commonName, usage: .clientAuth, alternativeNames: uris.map { .uniformResourceIdentifier($0) })
    }

    /// Writes the certificate (mode 0644) and private key (mode 0600) into `directory`, atomically.
    ///
    /// The directory must exist. Existing files of the same names are replaced.
    ///
    /// - Throws: ``TLSConfigurationError`` with `unwritableFile`.
    public func write(
        to directory: String, certificateFileName: String = "ca.pem", keyFileName: String = "ca-key.pem"
    ) throws(TLSConfigurationError) {
        try FileIO.writeAtomically(
            privateKeyPEM, to: FileIO.join(directory, keyFileName), permissions: [.ownerReadWrite])
        try FileIO.writeAtomically(
            certificatePEM, to: FileIO.join(directory, certificateFileName),
            permissions: [.ownerReadWrite, .groupRead, .otherRead])
    }

    private func issue(
        commonName: String, usage: ExtendedKeyUsage.Usage, alternativeNames: [GeneralName]
    ) throws(TLSConfigurationError) -> IssuedCertificate {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let now = Date()
        let leaf: Certificate
        do {
            let authorityKeyIdentifier =
                try certificate.extensions.subjectKeyIdentifier?.keyIdentifier
                ?? Self.keyIdentifier(of: certificate.publicKey)
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([usage])
                SubjectKeyIdentifier(keyIdentifier: Self.keyIdentifier(of: key.publicKey))
                AuthorityKeyIdentifier(keyIdentifier: authorityKeyIdentifier)
                if !alternativeNames.isEmpty {
                    SubjectAlternativeNames(alternativeNames)
                }
            }
            leaf = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
                notValidBefore: now - Self.backdating,
                notValidAfter: min(now + Self.leafValidity, certificate.notValidAfter),
                issuer: certificate.subject, subject: try DistinguishedName { CommonName(commonName) },
                signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: privateKey)
        } catch {
            throw TLSConfigurationError.wrapping(
                .certificateGeneration, "cannot issue a certificate for \"\(commonName)\"", error)
        }
        return IssuedCertificate(certificatePEM: try PEM.encode(leaf), privateKeyPEM: try PEM.encode(key))
    }

    /// A key identifier: the leftmost 160 bits of the SHA-256 hash of the subject public key info
    /// (in the spirit of RFC 7093, method 1).
    private static func keyIdentifier(of publicKey: Certificate.PublicKey) -> ArraySlice<UInt8> {
        ArraySlice(SHA256.hash(data: Array(publicKey.subjectPublicKeyInfoBytes)).prefix(20))
    }
}

/// PEM encoding of swift-certificates values, with a trailing newline.
enum PEM {
    static func encode(_ certificate: Certificate) throws(TLSConfigurationError) -> String {
        do {
            return terminated(try certificate.serializeAsPEM().pemString)
        } catch {
            throw TLSConfigurationError.wrapping(.certificateGeneration, "cannot encode a certificate as PEM", error)
        }
    }

    static func encode(_ key: Certificate.PrivateKey) throws(TLSConfigurationError) -> String {
        do {
            return terminated(try key.serializeAsPEM().pemString)
        } catch {
            throw TLSConfigurationError.wrapping(.certificateGeneration, "cannot encode a private key as PEM", error)
        }
    }

    private static func terminated(_ text: String) -> String {
        text.hasSuffix("\n") ? text : text + "\n"
    }
}
