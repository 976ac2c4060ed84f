public import NIOSSL
import SwiftASN1
import X509

/// The names a peer certificate carries, as an authorizer maps them to a principal: the subject's
/// common name and distinguished name, and the URI and DNS subject alternative names.
///
/// ```swift
/// if let certificate = try channel.pipeline.syncOperations.nioSSL_peerCertificate() {
///     let identity = try CertificateIdentity(certificate)
///     print(identity.commonName ?? "-", identity.uris)  // "billing" ["spiffe://example.org/billing"]
/// }
/// ```
public struct CertificateIdentity: Sendable, Hashable {
    /// The subject's common name (the last CN when there are several), or `nil`.
    public var commonName: String?
    /// The subject as an RFC 4514 string, most specific attribute first: `CN=billing,O=Example`.
    public var distinguishedName: String
    /// URI subject alternative names, in certificate order (SPIFFE ids are URIs).
    public var uris: [String]
    /// DNS subject alternative names, in certificate order.
    public var dnsNames: [String]

    /// Creates an identity from its parts.
    public init(commonName: String?, distinguishedName: String, uris: [String] = [], dnsNames: [String] = []) {
        self.commonName = commonName
        self.distinguishedName = distinguishedName
        self.uris = uris
        self.dnsNames = dnsNames
    }

    /// Reads the names of a DER-encoded X.509 certificate.
    ///
    /// - Throws: ``TLSConfigurationError`` with code `invalidPEM` when the bytes are not a certificate.
    public init(derEncoded bytes: [UInt8]) throws(TLSConfigurationError) {
        let certificate: Certificate
        let alternativeNames: SubjectAlternativeNames?
        do {
            certificate = try Certificate(derEncoded: bytes)
            alternativeNames = try certificate.extensions.subjectAlternativeNames
        } catch {
            throw TLSConfigurationError(code: .invalidPEM, message: "the peer certificate cannot be parsed: \(error)")
        }
        var commonName: String?
        for relativeName in certificate.subject {
            for attribute in relativeName where attribute.type == .RDNAttributeType.commonName {
                commonName = String(attribute.value) ?? attribute.value.description
            }
        }
        var uris: [String] = []
        var dnsNames: [String] = []
        for name in alternativeNames ?? SubjectAlternativeNames() {
            switch name {
            case .uniformResourceIdentifier(let uri): uris.append(uri)
            case .dnsName(let dns): dnsNames.append(dns)
            default: break
            }
        }
        self.init(
            commonName: commonName, distinguishedName: String(describing: certificate.subject), uris: uris,
            dnsNames: dnsNames)
    }

    /// Reads the names of a certificate SwiftNIO SSL verified.
    public init(_ certificate: NIOSSLCertificate) throws(TLSConfigurationError) {
        let bytes: [UInt8]
        do { bytes = try certificate.toDERBytes() } catch {
            throw TLSConfigurationError(code: .invalidPEM, message: "the peer certificate cannot be encoded: \(error)")
        }
        try self.init(derEncoded: bytes)
    }
}
