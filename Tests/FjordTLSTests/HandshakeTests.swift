import FjordTLS
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// Real TLS connections over loopback (127.0.0.1) with contexts built from generated PEM files.
@Suite("TLS handshakes over loopback")
struct HandshakeTests {
    @Test("a client trusting the CA talks TLS 1.3 to the server and gets its bytes echoed")
    func echoOverTLS13() async throws {
        try await inTemporaryDirectory { directory in
            let pki = try TestPKI(directory: directory)
            let serverContext = try pki.serverConfiguration().makeContext()
            let clientContext = try ClientTLSConfiguration(trustRootsPath: pki.caPath).makeContext()
            try await withEventLoopGroup { group in
                try await withEchoServer(context: serverContext, group: group) { port in
                    let result = try await exchange(
                        "hello, fjord", port: port, context: clientContext, serverHostname: "localhost", group: group)
                    #expect(result == Exchange(echoed: "hello, fjord", tlsVersion: .tlsv13))
                }
            }
        }
    }

    @Test("a TLS 1.2-only client is accepted; a TLS 1.1-only client is not")
    func tlsVersionRange() async throws {
        try await inTemporaryDirectory { directory in
            let pki = try TestPKI(directory: directory)
            let serverContext = try pki.serverConfiguration().makeContext()
            let trustRoots = NIOSSLTrustRoots.certificates(try NIOSSLCertificate.fromPEMFile(pki.caPath))
            var tls12 = TLSConfiguration.makeClientConfiguration()
            tls12.trustRoots = trustRoots
            tls12.maximumTLSVersion = .tlsv12
            var tls11 = tls12
            tls11.minimumTLSVersion = .tlsv1
            tls11.maximumTLSVersion = .tlsv11
            try await withEventLoopGroup { group in
                try await withEchoServer(context: serverContext, group: group) { port in
                    let modern = try await exchange(
                        "twelve", port: port, context: NIOSSLContext(configuration: tls12),
                        serverHostname: "localhost", group: group)
                    #expect(modern == Exchange(echoed: "twelve", tlsVersion: .tlsv12))
                    let legacy = await attempt {
                        try await exchange(
                            "eleven", port: port, context: NIOSSLContext(configuration: tls11),
                            serverHostname: "localhost", group: group)
                    }
                    #expect(legacy.echoed != "eleven")
                }
            }
        }
    }

    @Test("connecting by IP address verifies the certificate's IP SAN")
    func connectByIPAddress() async throws {
        try await inTemporaryDirectory { directory in
            let pki = try TestPKI(directory: directory)
            let serverContext = try pki.serverConfiguration().makeContext()
            let configuration = ClientTLSConfiguration(trustRootsPath: pki.caPath)
            #expect(configuration.handlerServerHostname(connectingTo: "127.0.0.1") == nil)
            #expect(configuration.handlerServerHostname(connectingTo: "[::1]") == nil)
            #expect(configuration.handlerServerHostname(connectingTo: "localhost") == "localhost")
            let clientContext = try configuration.makeContext()
            try await withEventLoopGroup { group in
                try await withEchoServer(context: serverContext, group: group) { port in
                    let result = try await exchange(
                        "by address", port: port, context: clientContext,
                        serverHostname: configuration.handlerServerHostname(connectingTo: "127.0.0.1"), group: group)
                    #expect(result.echoed == "by address")
                }
            }
        }
    }

    @Test("a server name the certificate does not cover is rejected")
    func wrongHostnameIsRejected() async throws {
        try await inTemporaryDirectory { directory in
            // NIOSSL also accepts a certificate whose IP SAN matches the connected address, whatever the
            // expected name; so this server certificate names only "localhost".
            let ca = try CertificateAuthority.generate()
            try ca.write(to: directory)
            let paths = try ca.issueServerCertificate(commonName: "named", dnsNames: ["localhost"], ipAddresses: [])
                .write(to: directory, name: "named")
            let serverContext = try ServerTLSConfiguration(
                certificateChainPath: paths.certificatePath, privateKeyPath: paths.privateKeyPath
            ).makeContext()
            let wrong = ClientTLSConfiguration(trustRootsPath: directory + "/ca.pem", serverHostname: "broker.example.com")
            let right = ClientTLSConfiguration(trustRootsPath: directory + "/ca.pem", serverHostname: "localhost")
            let wrongContext = try wrong.makeContext()
            let rightContext = try right.makeContext()
            try await withEventLoopGroup { group in
                try await withEchoServer(context: serverContext, group: group) { port in
                    let rejected = await attempt {
                        try await exchange(
                            "wrong name", port: port, context: wrongContext,
                            serverHostname: wrong.handlerServerHostname(connectingTo: "127.0.0.1"), group: group)
                    }
                    #expect(rejected.failed)
                    #expect(rejected.error is NIOSSLExtraError)
                    let accepted = try await exchange(
                        "right name", port: port, context: rightContext,
                        serverHostname: right.handlerServerHostname(connectingTo: "127.0.0.1"), group: group)
                    #expect(accepted.echoed == "right name")
                }
            }
        }
    }

    @Test("mutual TLS: only clients with a certificate from the trusted CA get through")
    func mutualTLS() async throws {
        try await inTemporaryDirectory { directory in
            let pki = try TestPKI(directory: directory)
            let serverContext = try pki.serverConfiguration(requireClientCertificate: true).makeContext()
            let withCertificate = try ClientTLSConfiguration(
                trustRootsPath: pki.caPath, certificateChainPath: pki.client.certificatePath,
                privateKeyPath: pki.client.privateKeyPath
            ).makeContext()
            let withoutCertificate = try ClientTLSConfiguration(trustRootsPath: pki.caPath).makeContext()
            let withForeignCertificate = try ClientTLSConfiguration(
                trustRootsPath: pki.caPath, certificateChainPath: pki.otherClient.certificatePath,
                privateKeyPath: pki.otherClient.privateKeyPath
            ).makeContext()
            let trustingOtherCA = try ClientTLSConfiguration(
                trustRootsPath: pki.otherCAPath, certificateChainPath: pki.client.certificatePath,
                privateKeyPath: pki.client.privateKeyPath
            ).makeContext()

            try await withEventLoopGroup { group in
                try await withEchoServer(context: serverContext, group: group) { port in
                    func send(_ message: String, _ context: NIOSSLContext) async -> Outcome {
                        await attempt {
                            try await exchange(
                                message, port: port, context: context, serverHostname: "localhost", group: group)
                        }
                    }
                    let accepted = await send("mutual", withCertificate)
                    #expect(accepted.echoed == "mutual")
                    #expect(accepted.exchange?.tlsVersion == .tlsv13)

                    let anonymous = await send("anonymous", withoutCertificate)
                    #expect(anonymous.echoed != "anonymous")

                    let foreign = await send("foreign", withForeignCertificate)
                    #expect(foreign.echoed != "foreign")

                    let distrustful = await send("distrustful", trustingOtherCA)
                    #expect(distrustful.failed)
                    #expect(distrustful.error is NIOSSLError)
                }
            }
        }
    }
}

/// The result of an exchange that may fail.
struct Outcome {
    var exchange: Exchange?
    var error: (any Error)?
    /// The echoed text; `nil` if the exchange threw.
    var echoed: String? { exchange?.echoed }
    var failed: Bool { error != nil }
}

func attempt(_ body: () async throws -> Exchange) async -> Outcome {
    do {
        return Outcome(exchange: try await body())
    } catch {
        return Outcome(error: error)
    }
}
