import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import FjordRecords
import FjordTLS
import FjordWire
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// Every kind of bad input gets its documented error; the broker stays up and other
/// connections are untouched.
@Suite("Broker bad input", .timeLimit(.minutes(2)))
struct BrokerBadInputTests {
    /// Opens a TLS connection that has not done the handshake, for raw frames.
    func rawConnection(_ broker: TestBroker, encodeFrames: Bool = true) async throws -> (any Channel, RawFrames) {
        let context = try ClientTLSConfiguration(trustRootsPath: broker.caPath).makeContext()
        let frames = RawFrames()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maximumPayloadLength: 1 << 24)))
                    if encodeFrames { try channel.pipeline.syncOperations.addHandler(FrameEncoder()) }
                    try channel.pipeline.syncOperations.addHandler(frames.handler)
                }
            }
            .connect(host: "127.0.0.1", port: broker.port).get()
        return (channel, frames)
    }

    /// The broker still serves a fresh client.
    func expectHealthy(_ broker: TestBroker) async throws {
        let connection = try await broker.connect()
        let list: Fjord_V1_ListTopicsResponse = try await connection.unary(.listTopics, Fjord_V1_ListTopicsRequest())
        _ = list
        try await connection.close()
    }

    @Test func aUnaryResponseLargerThanTheClientAcceptsFailsThatCallOnly() async throws {
        try await withBroker { broker in
            let admin = try await broker.connect()
            for i in 0..<20 { try await createTopic(admin, "a-rather-long-topic-name-number-\(i)") }
            let small = try await FjordConnection.connect(
                host: "127.0.0.1", port: broker.port, tls: ClientTLSConfiguration(trustRootsPath: broker.caPath),
                maxFrameBytes: 256)
            do {
                let _: Fjord_V1_ListTopicsResponse = try await small.unary(.listTopics, Fjord_V1_ListTopicsRequest())
                Issue.record("a 700-byte response reached a client that accepts 256")
            } catch let error as FjordClientError {
                #expect(error.code == .invalidRequest)
                #expect(error.message.contains("256"))
            }
            // The connection is still usable for answers that fit.
            var describe = Fjord_V1_DescribeTopicRequest()
            describe.name = "a-rather-long-topic-name-number-0"
            let described: Fjord_V1_DescribeTopicResponse = try await small.unary(.describeTopic, describe)
            #expect(described.topic.partitions.count == 1)
        }
    }

    @Test func frameBeforeHandshakeClosesWithHandshakeRequired() async throws {
        try await withBroker { broker in
            let bystander = try await broker.connect()
            let (channel, frames) = try await rawConnection(broker)
            try await channel.writeAndFlush(
                Frame(streamID: 1, method: Fjord_V1_Method.listTopics.id, flags: .endStream, payload: ByteBuffer()))
            let frame = try #require(await frames.next())
            #expect(frame.header.streamID == 0 && frame.header.flags.contains(.error))
            #expect(try Fjord_V1_Error(buffer: frame.payload).code == .handshakeRequired)
            try await channel.closeFuture.get()
            let _: Fjord_V1_ListTopicsResponse = try await bystander.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            try await expectHealthy(broker)
        }
    }

    @Test func oversizeFrameIsRejectedFromItsHeader() async throws {
        try await withBroker({ $0.maxFrameBytes = 64 * 1024 }) { broker in
            let (channel, frames) = try await rawConnection(broker, encodeFrames: false)
            // Only the 12 header bytes are sent: the broker must not wait for the 16 MiB payload.
            var header = ByteBuffer()
            FrameHeader(payloadLength: 16 << 20, streamID: 3, method: Fjord_V1_Method.produce.id).write(to: &header)
            try await channel.writeAndFlush(header)
            let frame = try #require(await frames.next())
            #expect(frame.header.streamID == 0 && frame.header.flags.contains(.error))
            #expect(try Fjord_V1_Error(buffer: frame.payload).code == .frameTooLarge)
            try await channel.closeFuture.get()
            try await expectHealthy(broker)
        }
    }

    @Test func malformedProtobufUnknownMethodAndUnknownTopic() async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            try await createTopic(connection, "t", partitions: 2)
            // Malformed protobuf: an error on that stream; the connection stays usable.
            let garbage = connection.openStream(.createTopic)
            try await garbage.send(ByteBuffer(bytes: [0xFF, 0xFF, 0xFF]), endOfStream: true)
            await #expect { _ = try await garbage.next() } throws: { ($0 as? FjordClientError)?.code == .malformedMessage }
            // Unknown method.
            let unknown = connection.openStream(.UNRECOGNIZED(999))
            try await unknown.send(ByteBuffer(), endOfStream: true)
            await #expect { _ = try await unknown.next() } throws: { ($0 as? FjordClientError)?.code == .unknownMethod }
            // Unknown topic and partition: the ack carries the error.
            let acks = try await produce(connection, topic: "nope", partition: 0, batches: [makeBatch(["x"])])
            #expect(acks.first?.error.code == .unknownTopicOrPartition)
            #expect(acks.first?.error.retriable == true)
            let badPartition = try await produce(connection, topic: "t", partition: 7, batches: [makeBatch(["x"])])
            #expect(badPartition.first?.error.code == .unknownTopicOrPartition)
            #expect(badPartition.first?.error.message.contains("has no partition 7") == true)
            // A malformed ProduceRequest fails its stream.
            let produceStream = connection.openStream(.produce)
            try await produceStream.send(ByteBuffer(bytes: [0x0A, 0x7F]), endOfStream: true)
            await #expect { _ = try await produceStream.next() } throws: { ($0 as? FjordClientError)?.code == .malformedMessage }
            let list: Fjord_V1_ListTopicsResponse = try await connection.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            #expect(list.names == ["t"])
        }
    }

    @Test func batchWithBadCRCIsRejectedAndNothingIsAppended() async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            try await createTopic(connection, "t")
            var batch = makeBatch(["good", "bytes"])
            let last = batch.writerIndex - 1
            batch.setInteger(batch.getInteger(at: last, as: UInt8.self)! ^ 0xFF, at: last)
            let acks = try await produce(connection, topic: "t", partition: 0, batches: [batch, makeBatch(["next"])])
            #expect(acks[0].error.code == .corruptBatch)
            #expect(acks[1].baseOffset == 0 && !acks[1].hasError)
            let result = try await fetch(connection, topic: "t", partition: 0, offset: 0)
            #expect(values(of: result.records) == ["next"])
        }
    }

    @Test func fetchAndSubscribeOutOfRangeNameBothBounds() async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            try await createTopic(connection, "t")
            _ = try await produce(connection, topic: "t", partition: 0, batches: [makeBatch(["a", "b", "c"])])
            let result = try await fetch(connection, topic: "t", partition: 0, offset: 10)
            #expect(result.error.code == .offsetOutOfRange)
            #expect(result.error.message.contains("0 to 2"))
            let stream = connection.openStream(.subscribe)
            var request = Fjord_V1_SubscribeRequest()
            request.topic = "t"
            request.offset = 99
            request.leaderEpoch = -1
            request.creditBytes = 1024
            try await stream.send(request)
            await #expect { _ = try await stream.next() } throws: { ($0 as? FjordClientError)?.code == .offsetOutOfRange }
            // A stale leader epoch is fenced.
            var fenced = Fjord_V1_FetchRequest()
            var partition = Fjord_V1_FetchPartition()
            partition.topic = "t"
            partition.leaderEpoch = 5
            fenced.partitions = [partition]
            let response: Fjord_V1_FetchResponse = try await connection.unary(.fetch, fenced)
            #expect(response.partitions[0].error.code == .unknownLeaderEpoch)
        }
    }

    @Test func plaintextClientOnTheTLSPortIsDroppedAndTheBrokerStaysUp() async throws {
        try await withBroker { broker in
            let connection = try await FjordConnectionAttempt.plaintext(port: broker.port)
            #expect(connection == false)
            try await expectHealthy(broker)
        }
    }

    @Test func mutualTLSRejectsUntrustedClientCertificates() async throws {
        try await withBroker({ $0.requireClientCertificate = true }) { broker in
            let certificates = broker.directory + "/certs"
            let ca = try CertificateAuthority(certificatePath: certificates + "/ca.pem", privateKeyPath: certificates + "/ca-key.pem")
            let trusted = try ca.issueClientCertificate(commonName: "good").write(to: broker.directory, name: "good")
            let stranger = try CertificateAuthority.generate(commonName: "someone else")
            let untrusted = try stranger.issueClientCertificate(commonName: "bad").write(to: broker.directory, name: "bad")

            let good = try await broker.connect(
                tls: ClientTLSConfiguration(
                    trustRootsPath: broker.caPath, certificateChainPath: trusted.certificatePath, privateKeyPath: trusted.privateKeyPath))
            let _: Fjord_V1_ListTopicsResponse = try await good.unary(.listTopics, Fjord_V1_ListTopicsRequest())

            await #expect(throws: (any Error).self) {
                _ = try await broker.connect(
                    tls: ClientTLSConfiguration(
                        trustRootsPath: broker.caPath, certificateChainPath: untrusted.certificatePath,
                        privateKeyPath: untrusted.privateKeyPath))
            }
            await #expect(throws: (any Error).self) {
                _ = try await broker.connect(tls: ClientTLSConfiguration(trustRootsPath: broker.caPath))
            }
            let _: Fjord_V1_ListTopicsResponse = try await good.unary(.listTopics, Fjord_V1_ListTopicsRequest())
        }
    }
}

extension BrokerBadInputTests {
    @Test func aSubscriberThatStopsReadingCostsBoundedMemory() async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            try await createTopic(connection, "big")
            let value = String(repeating: "v", count: 1000)
            let batch = makeBatch(Array(repeating: value, count: 1000))  // ~1 MB
            for _ in 0..<8 {
                _ = try await produce(connection, topic: "big", partition: 0, batches: Array(repeating: batch, count: 8))
            }
            let (channel, _) = try await broker.rawHandshakenConnection()
            // Stop reading from the socket, then ask for everything with effectively unlimited credit.
            try await channel.setOption(.autoRead, value: false).get()
            var subscribe = Fjord_V1_SubscribeRequest()
            subscribe.topic = "big"
            subscribe.leaderEpoch = -1
            subscribe.creditBytes = 1 << 40
            try await channel.writeAndFlush(
                Frame(streamID: 3, method: Fjord_V1_Method.subscribe.id, payload: try subscribe.serializedBuffer()))
            try await Task.sleep(for: .seconds(1))
            // 64 MB are available; the broker sends only until the socket and its 1 MiB write buffer fill.
            let sent = bytesOut(broker)
            #expect(sent > 0)
            #expect(sent < 24 << 20, "the broker read \(sent) bytes for a subscriber that stopped reading")
            try await expectHealthy(broker)
            try await channel.close()
        }
    }
}

/// Collects frames from a raw connection.
final class RawFrames: Sendable {
    let (stream, continuation) = AsyncStream.makeStream(of: Frame.self)
    let iterator: FjordStreamIteratorBox

    init() { iterator = FjordStreamIteratorBox(stream.makeAsyncIterator()) }

    var handler: RawFrameHandler { RawFrameHandler(continuation: continuation) }
    func next() async -> Frame? { await iterator.next() }
}

final class FjordStreamIteratorBox: @unchecked Sendable {
    var iterator: AsyncStream<Frame>.Iterator
    init(_ iterator: AsyncStream<Frame>.Iterator) { self.iterator = iterator }
    func next() async -> Frame? { await iterator.next() }
}

final class RawFrameHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = Frame
    let continuation: AsyncStream<Frame>.Continuation
    init(continuation: AsyncStream<Frame>.Continuation) { self.continuation = continuation }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { continuation.yield(unwrapInboundIn(data)) }
    func channelInactive(context: ChannelHandlerContext) { continuation.finish() }
}

enum FjordConnectionAttempt {
    /// Tries a plaintext handshake against `port`; `true` if the broker answered it.
    static func plaintext(port: Int) async throws -> Bool {
        do {
            let connection = try await FjordConnection.connect(host: "127.0.0.1", port: port, tls: nil)
            try? await connection.close()
            return true
        } catch {
            return false
        }
    }
}
