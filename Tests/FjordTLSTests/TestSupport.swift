import FjordTLS
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Runs `body` with a fresh directory under the temporary directory, removed afterwards.
func inTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-tls-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

/// Two independent CAs with certificates written to one directory:
/// `ca.pem`, `server.pem`, `client.pem` from the first; `other-ca.pem`, `other-client.pem` from the second.
struct TestPKI {
    var directory: String
    var caPath: String { directory + "/ca.pem" }
    var otherCAPath: String { directory + "/other-ca.pem" }
    var server: (certificatePath: String, privateKeyPath: String)
    var client: (certificatePath: String, privateKeyPath: String)
    var otherClient: (certificatePath: String, privateKeyPath: String)

    init(directory: String) throws {
        self.directory = directory
        let ca = try CertificateAuthority.generate(commonName: "Fjord test CA")
        try ca.write(to: directory)
        server = try ca.issueServerCertificate(
            commonName: "test server", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"]
        ).write(to: directory, name: "server")
        client = try ca.issueClientCertificate(commonName: "test client").write(to: directory, name: "client")

        let other = try CertificateAuthority.generate(commonName: "Other CA")
        try other.write(to: directory, certificateFileName: "other-ca.pem", keyFileName: "other-ca-key.pem")
        otherClient = try other.issueClientCertificate(commonName: "intruder").write(to: directory, name: "other-client")
    }

    func serverConfiguration(requireClientCertificate: Bool = false) -> ServerTLSConfiguration {
        ServerTLSConfiguration(
            certificateChainPath: server.certificatePath, privateKeyPath: server.privateKeyPath,
            trustRootsPath: requireClientCertificate ? caPath : nil,
            requireClientCertificate: requireClientCertificate)
    }
}

struct TimeoutError: Error {}

/// Runs `body`, cancelling it and throwing ``TimeoutError`` after `seconds`.
func withTimeout<T: Sendable>(
    seconds: Int = 10, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            throw TimeoutError()
        }
        defer { group.cancelAll() }
        guard let result = try await group.next() else { throw TimeoutError() }
        return result
    }
}

/// Echoes every byte back.
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// A TLS echo server on 127.0.0.1 (ephemeral port) for the duration of `body`.
func withEchoServer<T>(
    context: NIOSSLContext, group: any EventLoopGroup, _ body: (Int) async throws -> T
) async throws -> T {
    let server = try await ServerBootstrap(group: group)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                try channel.pipeline.syncOperations.addHandler(EchoHandler())
            }
        }
        .bind(host: "127.0.0.1", port: 0)
        .get()
    do {
        guard let port = server.localAddress?.port else { throw TimeoutError() }
        let result = try await body(port)
        try await server.close()
        return result
    } catch {
        try? await server.close()
        throw error
    }
}

/// What a client saw: the echoed text and the negotiated TLS version.
struct Exchange: Sendable, Equatable {
    var echoed: String
    var tlsVersion: TLSVersion?
}

/// Connects to 127.0.0.1:`port` with TLS, sends `message`, and reads until as many bytes come back
/// or the connection ends. Bounded by a timeout.
func exchange(
    _ message: String, port: Int, context: NIOSSLContext, serverHostname: String?, group: any EventLoopGroup
) async throws -> Exchange {
    // A failed handshake can surface as "I/O on closed channel" on the write that raced with the
    // close; the TLS error itself reaches errorCaught, so that is the error reported.
    let recorder = FirstErrorRecorder()
    do {
        return try await exchange(message, port: port, context: context, serverHostname: serverHostname, group: group, recorder: recorder)
    } catch {
        throw recorder.first ?? error
    }
}

/// Keeps the first error the pipeline reports.
final class FirstErrorRecorder: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny
    private let box = Mutex<(any Error)?>(nil)
    var first: (any Error)? { box.withLock { $0 } }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        box.withLock { if $0 == nil { $0 = error } }
        context.fireErrorCaught(error)
    }
}

private func exchange(
    _ message: String, port: Int, context: NIOSSLContext, serverHostname: String?, group: any EventLoopGroup,
    recorder: FirstErrorRecorder
) async throws -> Exchange {
    try await withTimeout {
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(5))
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: serverHostname))
                    try channel.pipeline.syncOperations.addHandler(recorder)
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: message))
            var received = ByteBuffer()
            for try await chunk in inbound {
                received.writeImmutableBuffer(chunk)
                if received.readableBytes >= message.utf8.count { break }
            }
            let version = try await channel.channel.nioSSL_tlsVersion().get()
            return Exchange(echoed: String(buffer: received), tlsVersion: version)
        }
    }
}

/// Runs `body` with a one-thread event loop group, shut down afterwards.
func withEventLoopGroup<T>(_ body: (any EventLoopGroup) async throws -> T) async throws -> T {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    do {
        let result = try await body(group)
        try await group.shutdownGracefully()
        return result
    } catch {
        try? await group.shutdownGracefully()
        throw error
    }
}
