import FjordProto
import FjordProtocol
import FjordRecords
import FjordWire
import NIOCore
import SwiftProtobuf

/// Seed inputs: valid messages made with the project's own builders, so the fuzzer starts from
/// inputs that reach deep into each decoder.
enum FuzzSeeds {
    static func batch(records: Int, keyed: Bool, idempotent: Bool) -> ByteBuffer {
        var builder = RecordBatchBuilder()
        if idempotent {
            builder.producerID = 7
            builder.producerEpoch = 0
            builder.baseSequence = 0
        }
        for index in 0..<records {
            builder.append(
                key: keyed ? Array("key-\(index)".utf8) : nil, value: Array("value \(index)".utf8),
                headers: index == 0 ? [RecordHeader(key: "trace", value: Array("abc".utf8))] : [],
                timestamp: 1_700_000_000_000 + Int64(index))
        }
        return builder.build()
    }

    static func produceRequest(_ batch: ByteBuffer) -> [UInt8] {
        var buffer = ByteBuffer()
        ProduceRequestView.write(
            topic: "orders", partition: 1, leaderEpoch: 0, acks: .leader, requestID: 42, batch: batch, to: &buffer)
        return Array(buffer.readableBytesView)
    }

    static func produce() -> [[UInt8]] {
        [
            produceRequest(batch(records: 1, keyed: false, idempotent: false)),
            produceRequest(batch(records: 5, keyed: true, idempotent: false)),
            produceRequest(batch(records: 3, keyed: true, idempotent: true)),
        ]
    }

    static func frames() -> [[UInt8]] {
        var handshake = Fjord_V1_HandshakeRequest()
        handshake.protocolVersion = 1
        handshake.clientID = "seed"
        let handshakeBytes = (try? handshake.serializedBytes() as [UInt8]) ?? []
        let produceBytes = produceRequest(batch(records: 2, keyed: true, idempotent: false))
        var stream = ByteBuffer()
        for (streamID, method, flags, payload) in [
            (UInt32(1), UInt16(1), FrameFlags.endStream, handshakeBytes),
            (5, 20, [], produceBytes), (5, 20, .endStream, []), (7, 22, .cancel, []),
        ] {
            FrameHeader(payloadLength: UInt32(payload.count), streamID: streamID, method: method, flags: flags)
                .write(to: &stream)
            stream.writeBytes(payload)
        }
        // The first byte is the chunk-size seed of the frame target.
        return [[0] + Array(stream.readableBytesView), [7] + Array(stream.readableBytesView)]
    }

    static func requests() -> [[UInt8]] {
        var messages: [any SwiftProtobuf.Message] = []
        var handshake = Fjord_V1_HandshakeRequest()
        handshake.protocolVersion = 1
        handshake.clientID = "seed"
        messages.append(handshake)
        var fetch = Fjord_V1_FetchRequest()
        var partition = Fjord_V1_FetchPartition()
        partition.topic = "orders"
        partition.partition = 1
        partition.offset = 10
        fetch.partitions = [partition]
        messages.append(fetch)
        var subscribe = Fjord_V1_SubscribeRequest()
        subscribe.topic = "orders"
        messages.append(subscribe)
        var credit = Fjord_V1_SubscribeCredit()
        credit.bytes = 1 << 20
        messages.append(credit)
        var listOffsets = Fjord_V1_ListOffsetsRequest()
        var listPartition = Fjord_V1_ListOffsetsPartition()
        listPartition.topic = "orders"
        listOffsets.partitions = [listPartition]
        messages.append(listOffsets)
        var initProducer = Fjord_V1_InitProducerIdRequest()
        initProducer.producerID = -1
        messages.append(initProducer)
        var create = Fjord_V1_CreateTopicRequest()
        create.name = "orders"
        create.partitions = 3
        create.configs = ["retention.ms": "60000"]
        messages.append(create)
        var delete = Fjord_V1_DeleteTopicRequest()
        delete.name = "orders"
        messages.append(delete)
        messages.append(Fjord_V1_ListTopicsRequest())
        var describe = Fjord_V1_DescribeTopicRequest()
        describe.name = "orders"
        messages.append(describe)
        var createPartitions = Fjord_V1_CreatePartitionsRequest()
        createPartitions.name = "orders"
        createPartitions.totalPartitions = 4
        messages.append(createPartitions)
        var alter = Fjord_V1_AlterTopicConfigRequest()
        alter.name = "orders"
        alter.set = ["segment.bytes": "1048576"]
        alter.remove = ["retention.ms"]
        messages.append(alter)
        var metadata = Fjord_V1_GetMetadataRequest()
        metadata.topics = ["orders"]
        messages.append(metadata)
        return messages.compactMap { message in
            guard let index = FuzzTargets.requestTypes.firstIndex(where: { $0 == type(of: message) }),
                let bytes: [UInt8] = try? message.serializedBytes()
            else { return nil }
            return [UInt8(index)] + bytes
        }
    }
}
