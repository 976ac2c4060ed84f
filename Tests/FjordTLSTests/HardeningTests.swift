import FjordTLS
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// What the hardening review found in the TLS set-up: weak TLS 1.2 suites, and a development CA
/// silently replaced when its key went missing.
@Suite("TLS hardening")
struct TLSHardeningTests {
    @Test("TLS 1.2 clients get the one ECDHE AES-GCM suite the server chose, whatever their order; CBC and SHA-1 suites are refused")
    func tls12OffersOneAEADSuite() async throws {
        try await inTemporaryDirectory { directory in
            let pki = try TestPKI(directory: directory)
            let serverContext = try pki.serverConfiguration().makeContext()
            let trustRoots = NIOSSLTrustRoots.certificates(try NIOSSLCertificate.fromPEMFile(pki.caPath))
            func client(_ suites: String) throws -> NIOSSLContext {
                var configuration = TLSConfiguration.makeClientConfiguration()
                configuration.trustRoots = trustRoots
                configuration.maximumTLSVersion = .tlsv12
                configuration.cipherSuites = suites
                return try NIOSSLContext(configuration: configuration)
            }
            try await withEventLoopGroup { group in
                try await withEchoServer(context: serverContext, group: group) { port in
                    // A client listing many suites, in either order, gets AES-128-GCM: the server decides.
                    let many = [
                        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES256-SHA",
                        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-SHA",
                    ]
                    for order in [many, many.reversed()] {
                        let outcome = await attempt {
                            try await exchange(
                                "aead", port: port, context: try client(order.joined(separator: ":")),
                                serverHostname: "localhost", group: group)
                        }
                        #expect(outcome.echoed == "aead", "\(String(describing: outcome.error))")
                    }
                    for suite in [
                        "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "AES128-SHA", "AES128-GCM-SHA256",
                        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305",
                    ] {
                        let outcome = await attempt {
                            try await exchange("weak", port: port, context: try client(suite), serverHostname: "localhost", group: group)
                        }
                        #expect(outcome.failed, "\(suite) should be refused")
                    }
                }
            }
        }
    }

    @Test("a CA certificate whose key was removed is refused, never silently replaced")
    func missingCAKeyIsRefused() async throws {
        try await inTemporaryDirectory { directory in
            let first = try DevelopmentCertificates.ensure(in: directory)
            #expect(first.generated)
            let trusted = try Data(contentsOf: URL(fileURLWithPath: first.caCertificatePath))
            try FileManager.default.removeItem(atPath: first.caPrivateKeyPath)

            let error = try #require(throws: TLSConfigurationError.self) { try DevelopmentCertificates.ensure(in: directory) }
            #expect(error.message.contains("ca-key.pem is missing"))
            #expect(error.message.contains("remove ca.pem too"))
            // Nothing was replaced: clients trusting ca.pem are unaffected.
            #expect(try Data(contentsOf: URL(fileURLWithPath: first.caCertificatePath)) == trusted)
            #expect(!FileManager.default.fileExists(atPath: first.caPrivateKeyPath))
        }
    }

    @Test("a missing server certificate is issued again by the CA clients already trust")
    func missingServerCertificateIsReissuedByTheSameCA() async throws {
        try await inTemporaryDirectory { directory in
            let first = try DevelopmentCertificates.ensure(in: directory)
            let trusted = try Data(contentsOf: URL(fileURLWithPath: first.caCertificatePath))
            try FileManager.default.removeItem(atPath: first.serverCertificatePath)

            let second = try DevelopmentCertificates.ensure(in: directory)
            #expect(second.generated)
            #expect(try Data(contentsOf: URL(fileURLWithPath: second.caCertificatePath)) == trusted)
            // The new server certificate chains to the old CA: a client trusting ca.pem connects.
            let serverContext = try ServerTLSConfiguration(
                certificateChainPath: second.serverCertificatePath, privateKeyPath: second.serverPrivateKeyPath
            ).makeContext()
            let clientContext = try ClientTLSConfiguration(trustRootsPath: first.caCertificatePath).makeContext()
            try await withEventLoopGroup { group in
                try await withEchoServer(context: serverContext, group: group) { port in
                    let result = try await exchange(
                        "same CA", port: port, context: clientContext, serverHostname: "localhost", group: group)
                    #expect(result.echoed == "same CA")
                }
            }
        }
    }

    @Test("a fresh directory gets a whole new CA and server certificate")
    func freshDirectoryGetsANewCA() async throws {
        try await inTemporaryDirectory { directory in
            let certificates = try DevelopmentCertificates.ensure(in: directory + "/certs")
            #expect(certificates.generated)
            for path in [certificates.caCertificatePath, certificates.caPrivateKeyPath, certificates.serverCertificatePath, certificates.serverPrivateKeyPath] {
                #expect(FileManager.default.fileExists(atPath: path))
            }
            let keyMode = try FileManager.default.attributesOfItem(atPath: certificates.caPrivateKeyPath)[.posixPermissions] as? Int
            #expect(keyMode == 0o600)
        }
    }
}
