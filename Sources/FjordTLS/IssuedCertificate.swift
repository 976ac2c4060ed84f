import SystemPackage

/// A certificate issued by a ``CertificateAuthority``, with its private key, both PEM-encoded.
///
/// ```swift
/// let server = try ca.issueServerCertificate(commonName: "broker-1", dnsNames: ["localhost"], ipAddresses: [])
/// let paths = try server.write(to: "certs", name: "server")  // certs/server.pem, certs/server-key.pem
/// let tls = ServerTLSConfiguration(certificateChainPath: paths.certificatePath, privateKeyPath: paths.privateKeyPath)
/// ```
public struct IssuedCertificate: Sendable, Hashable {
    /// The issued (leaf) certificate, PEM-encoded. The CA certificate is not included.
    public var certificatePEM: String
    /// The certificate's private key, PEM-encoded (PKCS #8). Keep it secret.
    public var privateKeyPEM: String

    /// Wraps a PEM certificate and its private key.
    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }

    /// Writes `NAME.pem` (mode 0644) and `NAME-key.pem` (mode 0600) into `directory`, atomically.
    ///
    /// The directory must exist. Existing files of the same names are replaced.
    ///
    /// - Returns: The paths of the certificate file and the private key file.
    /// - Throws: ``TLSConfigurationError`` with `unwritableFile`.
    @discardableResult
    public func write(
        to directory: String, name: String
    ) throws(TLSConfigurationError) -> (certificatePath: String, privateKeyPath: String) {
        let certificatePath = FileIO.join(directory, "\(name).pem")
        let privateKeyPath = FileIO.join(directory, "\(name)-key.pem")
        try FileIO.writeAtomically(privateKeyPEM, to: privateKeyPath, permissions: [.ownerReadWrite])
        try FileIO.writeAtomically(
            certificatePEM, to: certificatePath, permissions: [.ownerReadWrite, .groupRead, .otherRead])
        return (certificatePath, privateKeyPath)
    }
}
