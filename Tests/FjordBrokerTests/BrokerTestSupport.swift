import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import FjordRecords
import FjordTLS
import FjordWire
import Foundation
import Logging
import NIOCore
import SwiftProtobuf
import Testing

/// A broker on an ephemeral loopback port with its data in a fresh temporary directory.
struct TestBroker {
    let broker: Broker
    let directory: String

    var port: Int { broker.tlsAddress!.port! }
    var caPath: String { broker.developmentCertificates!.caCertificatePath }

    func connect(tls: ClientTLSConfiguration? = nil) async throws -> FjordConnection {
        try await FjordConnection.connect(
            host: "127.0.0.1", port: port, tls: tls ?? ClientTLSConfiguration(trustRootsPath: caPath), clientID: "test")
    }

    /// Connects, retrying for up to a second while the broker still counts a connection just closed.
    func connectOnceServed() async throws -> FjordConnection {
        var served: FjordConnection?
        for _ in 0..<50 where served == nil {
            served = try? await connect()
            if served == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        return try #require(served)
    }

    /// A raw TLS connection (see ``BrokerBadInputTests/rawConnection(_:encodeFrames:)``) that has
    /// done its handshake.
    func rawHandshakenConnection() async throws -> (any Channel, RawFrames) {
        let (channel, frames) = try await BrokerBadInputTests().rawConnection(self)
        var handshake = Fjord_V1_HandshakeRequest()
        handshake.protocolVersion = 1
        try await channel.writeAndFlush(
            Frame(streamID: 1, method: Fjord_V1_Method.handshake.id, flags: .endStream, payload: try handshake.serializedBuffer()))
        _ = try #require(await frames.next())
        return (channel, frames)
    }
}

func makeConfiguration(directory: String, _ configure: (inout BrokerConfiguration) -> Void = { _ in }) -> BrokerConfiguration {
    var configuration = BrokerConfiguration()
    configuration.dataDirectory = directory
    configuration.listen = .init(host: "127.0.0.1", port: 0)
    configuration.operationsListen = nil
    configuration.storageThreads = 2
    configuration.eventLoopThreads = 1
    // A loaded 2-core CI machine running many brokers at once can take seconds per TLS handshake;
    // tests of the deadline itself set their own.
    configuration.handshakeTimeoutMilliseconds = 60_000
    configure(&configuration)
    return configuration
}

/// Starts a broker, runs `body`, and shuts the broker down gracefully; the data directory is removed.
func withBroker(
    directory: String? = nil, _ configure: (inout BrokerConfiguration) -> Void = { _ in },
    _ body: (TestBroker) async throws -> Void
) async throws {
    let owned = directory == nil
    let directory = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("fjord-broker-\(UUID().uuidString)").path
    defer { if owned { try? FileManager.default.removeItem(atPath: directory) } }
    let broker = Broker(configuration: makeConfiguration(directory: directory, configure), logger: Logger(label: "test.broker"))
    try await broker.start()
    do {
        try await body(TestBroker(broker: broker, directory: directory))
    } catch {
        await broker.shutdown()
        throw error
    }
    await broker.shutdown()
}

func makeBatch(_ values: [String], keys: [String?]? = nil, timestamp: Int64 = 1_700_000_000_000) -> ByteBuffer {
    var builder = RecordBatchBuilder()
    for (index, value) in values.enumerated() {
        let key = keys?[index].map { Array($0.utf8) }
        builder.append(key: key, value: Array(value.utf8), timestamp: timestamp + Int64(index))
    }
    return builder.build()
}

func produceRequest(topic: String, partition: UInt32, acks: Fjord_V1_Acks = .leader, requestID: UInt64, batch: ByteBuffer) -> ByteBuffer {
    var buffer = ByteBuffer()
    ProduceRequestView.write(
        topic: topic, partition: partition, leaderEpoch: -1, acks: acks, requestID: requestID, batch: batch, to: &buffer)
    return buffer
}

@discardableResult
func createTopic(_ connection: FjordConnection, _ name: String, partitions: UInt32 = 1, configs: [String: String] = [:]) async throws -> Fjord_V1_TopicInfo {
    var request = Fjord_V1_CreateTopicRequest()
    request.name = name
    request.partitions = partitions
    request.configs = configs
    let response: Fjord_V1_CreateTopicResponse = try await connection.unary(.createTopic, request)
    return response.topic
}

/// Produces each batch on one stream and returns the acks in order.
func produce(
    _ connection: FjordConnection, topic: String, partition: UInt32, batches: [ByteBuffer], acks: Fjord_V1_Acks = .leader
) async throws -> [Fjord_V1_ProduceResponse] {
    let stream = connection.openStream(.produce)
    for (index, batch) in batches.enumerated() {
        try await stream.send(
            produceRequest(topic: topic, partition: partition, acks: acks, requestID: UInt64(index), batch: batch),
            endOfStream: index == batches.count - 1)
    }
    var responses: [Fjord_V1_ProduceResponse] = []
    while let frame = try await stream.next() {
        if frame.payload.readableBytes == 0 && frame.header.flags.contains(.endStream) { break }
        responses.append(try Fjord_V1_ProduceResponse(buffer: frame.payload))
    }
    return responses
}

func fetch(
    _ connection: FjordConnection, topic: String, partition: UInt32, offset: Int64, maxWaitMs: UInt32 = 0, minBytes: UInt32 = 0
) async throws -> Fjord_V1_FetchPartitionResult {
    var request = Fjord_V1_FetchRequest()
    var wanted = Fjord_V1_FetchPartition()
    wanted.topic = topic
    wanted.partition = partition
    wanted.offset = offset
    wanted.leaderEpoch = -1
    request.partitions = [wanted]
    request.maxWaitMs = maxWaitMs
    request.minBytes = minBytes
    let response: Fjord_V1_FetchResponse = try await connection.unary(.fetch, request)
    return response.partitions[0]
}

/// The record values in a fetched or pushed RecordBatchSet, decoded with the generated code.
func values(of set: Fjord_V1_RecordBatchSet, from offset: Int64 = 0) -> [String] {
    set.batches.flatMap { batch in
        batch.records.enumerated().compactMap { index, record in
            Int64(batch.baseOffset) + Int64(index) >= offset ? String(decoding: record.value, as: UTF8.self) : nil
        }
    }
}
