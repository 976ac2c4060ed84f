import NIOSSL
import SwiftASN1
import X509

/// Loads PEM certificates and keys from files into NIOSSL types, with errors that name the file.
enum PEMFiles {
    /// All certificates in a PEM file, in file order; at least one.
    static func certificates(at path: String) throws(TLSConfigurationError) -> [NIOSSLCertificate] {
        let bytes = try FileIO.read(path)
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(bytes)
        } catch {
            throw TLSConfigurationError.wrapping(.invalidPEM, "no valid PEM certificate", path: path, error)
        }
        guard !certificates.isEmpty else {
            throw TLSConfigurationError(code: .invalidPEM, message: "no PEM certificate in file", path: path)
        }
        return certificates
    }

    /// The private key in a PEM file, with its text (for the key-match check).
    static func privateKey(at path: String) throws(TLSConfigurationError) -> (key: NIOSSLPrivateKey, pem: String) {
        let bytes = try FileIO.read(path)
        do {
            return (try NIOSSLPrivateKey(bytes: bytes, format: .pem), String(decoding: bytes, as: UTF8.self))
        } catch {
            throw TLSConfigurationError.wrapping(
                .invalidPEM, "no valid unencrypted PEM private key", path: path, error)
        }
    }

    /// Throws ``TLSConfigurationError/Code/keyMismatch`` when the key's public half differs from the
    /// certificate's public key. Keys or certificates swift-certificates cannot parse are left to BoringSSL.
    static func checkKey(
        _ keyPEM: String, keyPath: String, matches certificate: NIOSSLCertificate, certificatePath: String
    ) throws(TLSConfigurationError) {
        guard let der = try? certificate.toDERBytes(),
            let parsedCertificate = try? Certificate(derEncoded: der),
            let parsedKey = try? Certificate.PrivateKey(pemEncoded: keyPEM)
        else { return }
        guard parsedCertificate.publicKey == parsedKey.publicKey else {
            throw TLSConfigurationError(
                code: .keyMismatch,
                message: "the private key in \(keyPath) does not belong to the first certificate in \(certificatePath)",
                path: keyPath)
        }
    }

    /// Builds the context, mapping BoringSSL's refusal to ``TLSConfigurationError/Code/contextCreation``.
    static func makeContext(_ configuration: TLSConfiguration) throws(TLSConfigurationError) -> NIOSSLContext {
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSConfigurationError.wrapping(.contextCreation, "cannot create the TLS context", error)
        }
    }
}
