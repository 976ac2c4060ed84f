import FjordTLS
import Foundation
import SwiftASN1
import Testing
import X509

@Suite("Development certificates and TLS configuration")
struct CertificateTests {
    @Test("generated CA, server and client certificates build server and client contexts")
    func contextsFromGeneratedCertificates() async throws {
        try await inTemporaryDirectory { directory in
            let pki = try TestPKI(directory: directory)
            _ = try pki.serverConfiguration().makeContext()
            _ = try pki.serverConfiguration(requireClientCertificate: true).makeContext()
            _ = try ServerTLSConfiguration(
                certificateChainPath: pki.server.certificatePath, privateKeyPath: pki.server.privateKeyPath,
                trustRootsPath: pki.caPath
            ).makeContext()
            _ = try ClientTLSConfiguration(trustRootsPath: pki.caPath).makeContext()
            _ = try ClientTLSConfiguration().makeContext()
            _ = try ClientTLSConfiguration(
                trustRootsPath: pki.caPath, certificateChainPath: pki.client.certificatePath,
                privateKeyPath: pki.client.privateKeyPath
            ).makeContext()
        }
    }

    @Test("the CA and issued certificates carry the expected extensions")
    func certificateContents() throws {
        let ca = try CertificateAuthority.generate(commonName: "Extensions CA")
        let caCertificate = try Certificate(pemEncoded: ca.certificatePEM)
        #expect(caCertificate.subject == caCertificate.issuer)
        #expect(caCertificate.signatureAlgorithm == .ecdsaWithSHA256)
        #expect(try caCertificate.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: nil))
        #expect(caCertificate.extensions[oid: .X509ExtensionID.basicConstraints]?.critical == true)
        #expect(try caCertificate.extensions.keyUsage == KeyUsage(keyCertSign: true, cRLSign: true))
        #expect(caCertificate.subject.description.contains("Extensions CA"))
        let caYears = caCertificate.notValidAfter.timeIntervalSince(caCertificate.notValidBefore) / (365 * 86400)
        #expect(caYears > 9.9 && caYears < 10.1)

        let server = try ca.issueServerCertificate(
            commonName: "broker", dnsNames: ["localhost", "broker.internal"], ipAddresses: ["127.0.0.1", "::1"])
        let serverCertificate = try Certificate(pemEncoded: server.certificatePEM)
        #expect(serverCertificate.issuer == caCertificate.subject)
        #expect(serverCertificate.signatureAlgorithm == .ecdsaWithSHA256)
        #expect(try serverCertificate.extensions.extendedKeyUsage == ExtendedKeyUsage([.serverAuth]))
        #expect(try serverCertificate.extensions.basicConstraints == .notCertificateAuthority)
        let names = try #require(try serverCertificate.extensions.subjectAlternativeNames)
        #expect(
            Array(names) == [
                .dnsName("localhost"), .dnsName("broker.internal"),
                .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
                .ipAddress(ASN1OctetString(contentBytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
            ])
        let now = Date()
        #expect(serverCertificate.notValidBefore < now - 3000)
        #expect(serverCertificate.notValidAfter > now + 700 * 86400)
        let serverKey = try Certificate.PrivateKey(pemEncoded: server.privateKeyPEM)
        #expect(serverKey.publicKey == serverCertificate.publicKey)

        let client = try ca.issueClientCertificate(commonName: "alice")
        let clientCertificate = try Certificate(pemEncoded: client.certificatePEM)
        #expect(try clientCertificate.extensions.extendedKeyUsage == ExtendedKeyUsage([.clientAuth]))
        #expect(clientCertificate.subject.description.contains("alice"))
    }

    @Test("a CA written to files loads back and keeps issuing certificates")
    func caRoundTrip() async throws {
        try await inTemporaryDirectory { directory in
            let ca = try CertificateAuthority.generate()
            try ca.write(to: directory)
            let loaded = try CertificateAuthority(
                certificatePath: directory + "/ca.pem", privateKeyPath: directory + "/ca-key.pem")
            #expect(loaded.certificatePEM == ca.certificatePEM)
            #expect(loaded.privateKeyPEM == ca.privateKeyPEM)
            #expect(try permissions(directory + "/ca-key.pem") == 0o600)

            let issued = try loaded.issueServerCertificate(commonName: "s", dnsNames: ["localhost"], ipAddresses: [])
            let paths = try issued.write(to: directory, name: "server")
            #expect(paths.certificatePath == directory + "/server.pem")
            #expect(paths.privateKeyPath == directory + "/server-key.pem")
            #expect(try permissions(paths.privateKeyPath) == 0o600)
            #expect(try String(contentsOfFile: paths.certificatePath, encoding: .utf8) == issued.certificatePEM)
            _ = try ServerTLSConfiguration(
                certificateChainPath: paths.certificatePath, privateKeyPath: paths.privateKeyPath,
                trustRootsPath: directory + "/ca.pem", requireClientCertificate: true
            ).makeContext()

            // A leaf certificate is not a CA.
            let error = try #require(
                throws: TLSConfigurationError.self,
                performing: {
                    try CertificateAuthority(
                        certificatePath: paths.certificatePath, privateKeyPath: paths.privateKeyPath)
                })
            #expect(error.code == .notCertificateAuthority)
            #expect(error.path == paths.certificatePath)
        }
    }

    @Test("DevelopmentCertificates.ensure generates once, then keeps the files")
    func developmentCertificates() async throws {
        try await inTemporaryDirectory { parent in
            let directory = parent + "/data/tls"
            let first = try DevelopmentCertificates.ensure(in: directory, extraDNSNames: ["fjord.test"])
            #expect(first.generated)
            #expect(first.caCertificatePath == directory + "/ca.pem")
            #expect(first.caPrivateKeyPath == directory + "/ca-key.pem")
            #expect(first.serverCertificatePath == directory + "/server.pem")
            #expect(first.serverPrivateKeyPath == directory + "/server-key.pem")
            #expect(try permissions(directory) == 0o700)
            #expect(try permissions(first.caPrivateKeyPath) == 0o600)
            #expect(try permissions(first.serverPrivateKeyPath) == 0o600)

            let paths = [
                first.caCertificatePath, first.caPrivateKeyPath, first.serverCertificatePath,
                first.serverPrivateKeyPath,
            ]
            let contents = try paths.map { try String(contentsOfFile: $0, encoding: .utf8) }

            let second = try DevelopmentCertificates.ensure(in: directory)
            #expect(!second.generated)
            #expect(second.serverCertificatePath == first.serverCertificatePath)
            #expect(try paths.map { try String(contentsOfFile: $0, encoding: .utf8) } == contents)

            let server = try Certificate(pemEncoded: contents[2])
            let names = try #require(try server.extensions.subjectAlternativeNames)
            #expect(names.contains(.dnsName("localhost")))
            #expect(names.contains(.dnsName("fjord.test")))
            #expect(names.contains(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))))
            _ = try ServerTLSConfiguration(
                certificateChainPath: second.serverCertificatePath, privateKeyPath: second.serverPrivateKeyPath
            ).makeContext()
            _ = try ClientTLSConfiguration(trustRootsPath: second.caCertificatePath).makeContext()

            // A missing server file means a new server certificate from the same CA.
            try FileManager.default.removeItem(atPath: first.serverPrivateKeyPath)
            let third = try DevelopmentCertificates.ensure(in: directory)
            #expect(third.generated)
            #expect(try String(contentsOfFile: third.caCertificatePath, encoding: .utf8) == contents[0])
            #expect(try String(contentsOfFile: third.serverCertificatePath, encoding: .utf8) != contents[2])
            #expect(try permissions(third.serverPrivateKeyPath) == 0o600)

            // No CA at all means a fresh set.
            try FileManager.default.removeItem(atPath: first.caCertificatePath)
            let fourth = try DevelopmentCertificates.ensure(in: directory)
            #expect(fourth.generated)
            #expect(try String(contentsOfFile: fourth.caCertificatePath, encoding: .utf8) != contents[0])
        }
    }

    @Test("a missing file is fileNotFound with its path")
    func missingFile() async throws {
        try await inTemporaryDirectory { directory in
            let pki = try TestPKI(directory: directory)
            let missing = directory + "/nope.pem"
            let error = try #require(
                throws: TLSConfigurationError.self,
                performing: {
                    try ServerTLSConfiguration(certificateChainPath: missing, privateKeyPath: pki.server.privateKeyPath)
                        .makeContext()
                })
            #expect(error.code == .fileNotFound)
            #expect(error.path == missing)
            #expect(error.description.contains(missing))

            let keyError = try #require(
                throws: TLSConfigurationError.self,
                performing: {
                    try ClientTLSConfiguration(
                        trustRootsPath: pki.caPath, certificateChainPath: pki.client.certificatePath,
                        privateKeyPath: missing
                    ).makeContext()
                })
            #expect(keyError.code == .fileNotFound)
            #expect(keyError.path == missing)

            let directoryError = try #require(
                throws: TLSConfigurationError.self,
                performing: { try ClientTLSConfiguration(trustRootsPath: directory).makeContext() })
            #expect(directoryError.code == .unreadableFile)
            #expect(directoryError.path == directory)
        }
    }

    @Test("garbage instead of PEM is invalidPEM with the path")
    func garbagePEM() async throws {
        try await inTemporaryDirectory { directory in
            let pki = try TestPKI(directory: directory)
            let garbage = directory + "/garbage.pem"
            try "this is not a certificate\n-----BEGIN CERTIFICATE-----\nAAAA!!\n-----END CERTIFICATE-----\n"
                .write(toFile: garbage, atomically: true, encoding: .utf8)
            let empty = directory + "/empty.pem"
            try "".write(toFile: empty, atomically: true, encoding: .utf8)

            for (certificatePath, keyPath, culprit) in [
                (garbage, pki.server.privateKeyPath, garbage),
                (empty, pki.server.privateKeyPath, empty),
                (pki.server.certificatePath, garbage, garbage),
                (pki.server.certificatePath, pki.server.certificatePath, pki.server.certificatePath),
            ] {
                let error = try #require(
                    throws: TLSConfigurationError.self,
                    performing: {
                        try ServerTLSConfiguration(certificateChainPath: certificatePath, privateKeyPath: keyPath)
                            .makeContext()
                    })
                #expect(error.code == .invalidPEM)
                #expect(error.path == culprit)
            }
            let trustError = try #require(
                throws: TLSConfigurationError.self,
                performing: { try ClientTLSConfiguration(trustRootsPath: garbage).makeContext() })
            #expect(trustError.code == .invalidPEM)
            #expect(trustError.path == garbage)
        }
    }

    @Test("a key from another certificate is keyMismatch")
    func keyMismatch() async throws {
        try await inTemporaryDirectory { directory in
            let pki = try TestPKI(directory: directory)
            let error = try #require(
                throws: TLSConfigurationError.self,
                performing: {
                    try ServerTLSConfiguration(
                        certificateChainPath: pki.server.certificatePath, privateKeyPath: pki.client.privateKeyPath
                    ).makeContext()
                })
            #expect(error.code == .keyMismatch)
            #expect(error.path == pki.client.privateKeyPath)
        }
    }

    @Test("configuration mistakes: mTLS without trust roots, half a client identity, bad IP addresses")
    func configurationMistakes() async throws {
        try await inTemporaryDirectory { directory in
            let pki = try TestPKI(directory: directory)
            let noRoots = try #require(
                throws: TLSConfigurationError.self,
                performing: {
                    try ServerTLSConfiguration(
                        certificateChainPath: pki.server.certificatePath, privateKeyPath: pki.server.privateKeyPath,
                        requireClientCertificate: true
                    ).makeContext()
                })
            #expect(noRoots.code == .missingTrustRoots)

            let halfIdentity = try #require(
                throws: TLSConfigurationError.self,
                performing: {
                    try ClientTLSConfiguration(certificateChainPath: pki.client.certificatePath).makeContext()
                })
            #expect(halfIdentity.code == .invalidArgument)

            let ca = try CertificateAuthority.generate()
            let badAddress = try #require(
                throws: TLSConfigurationError.self,
                performing: {
                    try ca.issueServerCertificate(commonName: "x", dnsNames: [], ipAddresses: ["256.1.1.1"])
                })
            #expect(badAddress.code == .invalidArgument)
            let noNames = try #require(
                throws: TLSConfigurationError.self,
                performing: { try ca.issueServerCertificate(commonName: "x", dnsNames: [], ipAddresses: []) })
            #expect(noNames.code == .invalidArgument)
        }
    }
}

/// The permission bits of a file or directory.
func permissions(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.posixPermissions] as? Int ?? -1) & 0o777
}
