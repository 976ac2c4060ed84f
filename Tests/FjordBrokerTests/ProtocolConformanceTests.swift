import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import FjordWire
import Foundation
import NIOCore
import SwiftProtobuf
import Testing

/// Protocol details settled in `docs/protocol.md` §3, §6 and §8, checked against a real broker
/// over TLS with raw frames.
@Suite("Protocol conformance", .timeLimit(.minutes(2)))
struct ProtocolConformanceTests {
    /// A raw TLS connection past its handshake.
    func handshaken(_ broker: TestBroker) async throws -> (any Channel, RawFrames) {
        let (channel, frames) = try await BrokerBadInputTests().rawConnection(broker)
        var handshake = Fjord_V1_HandshakeRequest()
        handshake.protocolVersion = 1
        try await channel.writeAndFlush(
            Frame(streamID: 1, method: Fjord_V1_Method.handshake.id, flags: .endStream, payload: try handshake.serializedBuffer()))
        let answer = try #require(await frames.next())
        #expect(!answer.header.flags.contains(.error))
        return (channel, frames)
    }

    func errorCode(_ frame: Frame) throws -> Fjord_V1_ErrorCode {
        #expect(frame.header.flags.contains(.error))
        return try Fjord_V1_Error(buffer: frame.payload).code
    }

    @Test func invalidStreamCarriesTheStreamsMethodID() async throws {
        try await withBroker { broker in
            let (channel, frames) = try await handshaken(broker)
            // An empty produce frame opens stream 3 without a request; a ListTopics frame does not fit it.
            try await channel.writeAndFlush(Frame(streamID: 3, method: Fjord_V1_Method.produce.id, payload: ByteBuffer()))
            try await channel.writeAndFlush(
                Frame(streamID: 3, method: Fjord_V1_Method.listTopics.id, flags: .endStream, payload: ByteBuffer()))
            let produceError = try #require(await frames.next())
            #expect(produceError.header.streamID == 3)
            #expect(produceError.header.method == Fjord_V1_Method.produce.id)
            #expect(try errorCode(produceError) == .invalidStream)

            // An open subscription (caught up, waiting) that gets a Fetch frame: the error names Subscribe.
            let admin = try await broker.connect()
            try await createTopic(admin, "t")
            let subscribe = try Fjord_V1_SubscribeRequest.with {
                $0.topic = "t"
                $0.leaderEpoch = -1
                $0.creditBytes = 1024
            }.serializedBuffer()
            try await channel.writeAndFlush(Frame(streamID: 5, method: Fjord_V1_Method.subscribe.id, payload: subscribe))
            try await channel.writeAndFlush(Frame(streamID: 5, method: Fjord_V1_Method.fetch.id, payload: ByteBuffer()))
            let subscribeError = try #require(await frames.next())
            #expect(subscribeError.header.streamID == 5)
            #expect(subscribeError.header.method == Fjord_V1_Method.subscribe.id)
            #expect(try errorCode(subscribeError) == .invalidStream)
            try await admin.close()
            try await channel.close()
            try await BrokerBadInputTests().expectHealthy(broker)
        }
    }

    @Test(arguments: [(Int64(-5), Int32(-1)), (-1, -3), (0, 1), (-2, 0), (7, -1)])
    func initProducerIdRefusesNegativeEpochsAndIds(id: Int64, epoch: Int32) async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            var request = Fjord_V1_InitProducerIdRequest()
            request.producerID = id
            request.producerEpoch = epoch
            await #expect { let _: Fjord_V1_InitProducerIdResponse = try await connection.unary(.initProducerID, request) } throws: {
                ($0 as? FjordClientError)?.code == .invalidRequest
            }
            // Kafka's request for a new identity (-1, -1), the proto3 defaults and their mixes still get one.
            for (newID, newEpoch) in [(Int64(-1), Int32(-1)), (-1, 0), (0, 0), (0, -1)] {
                request.producerID = newID
                request.producerEpoch = newEpoch
                let response: Fjord_V1_InitProducerIdResponse = try await connection.unary(.initProducerID, request)
                #expect(response.producerID >= 1 && response.producerEpoch == 0)
            }
            try await connection.close()
        }
    }

    @Test func aKnownFieldWithTheWrongWireTypeIsMalformedEverywhere() async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            // CreateTopicRequest.name (field 1, a string) sent as a varint.
            var create = ByteBuffer()
            create.writeProtobufVarintField(1, 5)
            create.writeProtobufVarintField(2, 1)
            let createStream = connection.openStream(.createTopic)
            try await createStream.send(create, endOfStream: true)
            await #expect { _ = try await createStream.next() } throws: { ($0 as? FjordClientError)?.code == .malformedMessage }

            // A nested one: FetchPartition.partition (field 2, a varint) sent length-delimited.
            try await createTopic(connection, "t")
            var partition = ByteBuffer()
            partition.writeProtobufStringField(1, "t")
            partition.writeProtobufStringField(2, "0")
            var fetchRequest = ByteBuffer()
            fetchRequest.writeProtobufLengthPrefix(1, length: partition.readableBytes)
            fetchRequest.writeBuffer(&partition)
            let fetchStream = connection.openStream(.fetch)
            try await fetchStream.send(fetchRequest, endOfStream: true)
            await #expect { _ = try await fetchStream.next() } throws: { ($0 as? FjordClientError)?.code == .malformedMessage }

            // A field number the message does not know is skipped (forward compatibility).
            var future = try Fjord_V1_DescribeTopicRequest.with { $0.name = "t" }.serializedBuffer()
            future.writeProtobufVarintField(99, 1)
            future.writeProtobufStringField(100, "later")
            let describeStream = connection.openStream(.describeTopic)
            try await describeStream.send(future, endOfStream: true)
            let described = try #require(try await describeStream.next())
            #expect(try Fjord_V1_DescribeTopicResponse(buffer: described.payload).topic.name == "t")

            // The topic was not created by the malformed request, and the connection still works.
            let list: Fjord_V1_ListTopicsResponse = try await connection.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            #expect(list.names == ["t"])
            try await connection.close()
        }
    }

    @Test func anErrorFlagOnAFrameThatOpensAStreamIsIgnored() async throws {
        try await withBroker { broker in
            let (channel, frames) = try await handshaken(broker)
            let create = try Fjord_V1_CreateTopicRequest.with { $0.name = "never"; $0.partitions = 1 }.serializedBuffer()
            try await channel.writeAndFlush(
                Frame(streamID: 3, method: Fjord_V1_Method.createTopic.id, flags: [.error, .endStream], payload: create))
            try await channel.writeAndFlush(
                Frame(streamID: 5, method: Fjord_V1_Method.createTopic.id, flags: .cancel, payload: ByteBuffer()))
            // The next answer is the one for this ListTopics: nothing was sent for streams 3 and 5.
            try await channel.writeAndFlush(
                Frame(streamID: 7, method: Fjord_V1_Method.listTopics.id, flags: .endStream, payload: ByteBuffer()))
            let answer = try #require(await frames.next())
            #expect(answer.header.streamID == 7)
            #expect(try Fjord_V1_ListTopicsResponse(buffer: answer.payload).names.isEmpty)
            try await channel.close()
        }
    }

    @Test(arguments: [FrameFlags.cancel, FrameFlags.error])
    func cancelOrErrorOnStreamZeroIsAConnectionError(flags: FrameFlags) async throws {
        try await withBroker { broker in
            let bystander = try await broker.connect()
            let (channel, frames) = try await handshaken(broker)
            try await channel.writeAndFlush(Frame(streamID: 0, method: 0, flags: flags, payload: ByteBuffer()))
            let frame = try #require(await frames.next())
            #expect(frame.header.streamID == 0 && frame.header.method == 0)
            #expect(try errorCode(frame) == .invalidStream)
            try await channel.closeFuture.get()
            let _: Fjord_V1_ListTopicsResponse = try await bystander.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            try await bystander.close()
        }
    }
}
