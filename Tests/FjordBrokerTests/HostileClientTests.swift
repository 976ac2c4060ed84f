import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import FjordRecords
import FjordWire
import Foundation
import NIOCore
import Testing

/// A client sending thousands of random and mutated frames after its handshake: the broker
/// answers or closes that connection, never crashes, never stores a damaged batch, and keeps
/// serving everyone else.
@Suite("Hostile client", .timeLimit(.minutes(2)))
struct HostileClientTests {
    @Test func randomAndMutatedFramesNeverTakeTheBrokerDown() async throws {
        try await withBroker({ $0.maxFrameBytes = 64 * 1024 }) { broker in
            let bystander = try await broker.connect()
            try await createTopic(bystander, "t", partitions: 2)
            let original = (0..<5).map { makeBatch(["seed-\($0)"]) }
            _ = try await produce(bystander, topic: "t", partition: 0, batches: original)

            // FJORD_FUZZ_SEED=n replays another sequence (25 seeds passed when this test was written).
            var random = TestRandom(seed: UInt64(ProcessInfo.processInfo.environment["FJORD_FUZZ_SEED"] ?? "") ?? 0x5EED_F00D)
            var framesSent = 0
            var connectionsClosedByBroker = 0
            var answers = 0
            for _ in 0..<16 {
                let (channel, frames) = try await BrokerBadInputTests().handshakenConnection(broker)
                for _ in 0..<300 {
                    guard channel.isActive else { break }
                    channel.write(randomFrame(&random), promise: nil)
                    framesSent += 1
                    if random.next(upTo: 16) == 0 { channel.flush() }
                }
                channel.flush()
                // Let the broker answer, then count what came back (or the close).
                try await Task.sleep(for: .milliseconds(100))
                try? await channel.close()
                while let frame = await frames.next() {
                    answers += 1
                    if frame.header.streamID == 0 { connectionsClosedByBroker += 1 }
                }
            }
            #expect(framesSent > 1000)
            #expect(answers > 50, "the broker answered \(answers) of \(framesSent) frames")
            #expect(connectionsClosedByBroker > 0)

            // The bystander's connection is untouched and the log holds only valid batches,
            // starting with the ones produced before.
            let topics: Fjord_V1_ListTopicsResponse = try await bystander.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            #expect(topics.names.contains("t"))
            for partition in UInt32(0)..<2 {
                var offset: Int64 = 0
                var high: Int64 = 1
                while offset < high {
                    let result = try await fetch(bystander, topic: "t", partition: partition, offset: offset)
                    #expect(!result.hasError)
                    high = result.highWatermark
                    guard !result.records.batches.isEmpty else { break }
                    for batch in result.records.batches {
                        offset = Int64(batch.baseOffset) + Int64(batch.records.count)
                    }
                }
                #expect(offset == high)
            }
            let first = try await fetch(bystander, topic: "t", partition: 0, offset: 0)
            #expect(values(of: first.records).prefix(5) == ["seed-0", "seed-1", "seed-2", "seed-3", "seed-4"])
            try await BrokerBadInputTests().expectHealthy(broker)
            try await bystander.close()
        }
    }

    @Test func aStreamIdReusedWhileItsAppendsAreInFlightGetsOnlyItsOwnAnswers() async throws {
        try await withBroker { broker in
            let admin = try await broker.connect()
            try await createTopic(admin, "reuse", partitions: 2)
            let (channel, frames) = try await BrokerBadInputTests().handshakenConnection(broker)
            let produce = Fjord_V1_Method.produce.id
            for round in 0..<20 {
                // Stream 3: durable appends (each waits for an fsync), cancelled while in flight ...
                let big = makeBatch((0..<50).map { "old-\(round)-\($0)-" + String(repeating: "o", count: 200) })
                for request in 0..<8 {
                    channel.write(
                        Frame(
                            streamID: 3, method: produce,
                            payload: produceRequest(topic: "reuse", partition: 0, acks: .durable, requestID: UInt64(1000 + request), batch: big)),
                        promise: nil)
                }
                channel.write(Frame(streamID: 3, method: produce, flags: .cancel, payload: ByteBuffer()), promise: nil)
                // ... then stream 3 again, a fast append to the other partition, then its end.
                channel.write(
                    Frame(
                        streamID: 3, method: produce,
                        payload: produceRequest(topic: "reuse", partition: 1, requestID: UInt64(round), batch: makeBatch(["new-\(round)"]))),
                    promise: nil)
                try await channel.writeAndFlush(Frame(streamID: 3, method: produce, flags: .endStream, payload: ByteBuffer()))
                // The new stream gets exactly its own ack, then its end; nothing of the old one.
                let ack = try #require(await frames.next())
                #expect(ack.header.streamID == 3 && !ack.header.flags.contains(.error))
                let response = try Fjord_V1_ProduceResponse(buffer: ack.payload)
                #expect(response.requestID == UInt64(round), "stream 3 got an answer to request \(response.requestID) of the cancelled stream")
                #expect(!response.hasError)
                let end = try #require(await frames.next())
                #expect(end.header.streamID == 3 && end.header.flags.contains(.endStream) && end.payload.readableBytes == 0)
            }
            try await channel.close()
            try await BrokerBadInputTests().expectHealthy(broker)
            let fetched = try await fetch(admin, topic: "reuse", partition: 1, offset: 0)
            #expect(values(of: fetched.records) == (0..<20).map { "new-\($0)" })
            try await admin.close()
        }
    }

    /// A frame with a random stream, method and flags, and a payload that is either random bytes
    /// or a valid request with a few bytes flipped.
    private func randomFrame(_ random: inout TestRandom) -> Frame {
        let methods: [UInt16] = [0, 1, 2, 10, 12, 13, 14, 15, 20, 20, 20, 21, 21, 22, 22, 23, 24, 99, 0xFFFF]
        let method = methods[random.next(upTo: methods.count)]
        let streamID = random.next(upTo: 200) == 0 ? 0 : UInt32(random.next(upTo: 40) * 2 + 3)
        var flags: FrameFlags = []
        if random.next(upTo: 3) == 0 { flags.insert(.endStream) }
        if random.next(upTo: 12) == 0 { flags.insert(.cancel) }
        if random.next(upTo: 200) == 0 { flags.insert(FrameFlags(rawValue: 0x40)) }  // unknown: closes the connection
        var payload = random.next(upTo: 3) == 0 ? randomBytes(&random, count: random.next(upTo: 300)) : validRequest(method, &random)
        for _ in 0..<random.next(upTo: 4) where payload.readableBytes > 0 {
            let index = payload.readerIndex + random.next(upTo: payload.readableBytes)
            payload.setInteger(payload.getInteger(at: index, as: UInt8.self)! ^ UInt8(1 + random.next(upTo: 255)), at: index)
        }
        return Frame(streamID: streamID, method: method, flags: flags, payload: payload)
    }

    private func validRequest(_ method: UInt16, _ random: inout TestRandom) -> ByteBuffer {
        let partition = UInt32(random.next(upTo: 3))
        let offset = Int64(random.next(upTo: 40)) - 5
        switch Fjord_V1_Method(id: method) {
        case .produce:
            let batch = makeBatch((0..<(1 + random.next(upTo: 5))).map { "r\($0)" })
            return produceRequest(topic: "t", partition: partition, requestID: UInt64(random.next(upTo: 100)), batch: batch)
        case .fetch:
            var request = Fjord_V1_FetchRequest()
            var wanted = Fjord_V1_FetchPartition()
            wanted.topic = random.next(upTo: 4) == 0 ? "missing" : "t"
            wanted.partition = partition
            wanted.offset = offset
            wanted.leaderEpoch = Int32(random.next(upTo: 3)) - 1
            wanted.maxBytes = UInt32(random.next(upTo: 100_000))
            request.partitions = [wanted]
            request.maxWaitMs = UInt32(random.next(upTo: 30))
            request.minBytes = UInt32(random.next(upTo: 1000))
            return (try? request.serializedBuffer()) ?? ByteBuffer()
        case .subscribe:
            var request = Fjord_V1_SubscribeRequest()
            request.topic = "t"
            request.partition = partition
            request.offset = offset
            request.leaderEpoch = -1
            request.creditBytes = UInt64(random.next(upTo: 50_000))
            request.maxBytes = UInt32(random.next(upTo: 20_000))
            return (try? request.serializedBuffer()) ?? ByteBuffer()
        case .listOffsets:
            var request = Fjord_V1_ListOffsetsRequest()
            var wanted = Fjord_V1_ListOffsetsPartition()
            wanted.topic = "t"
            wanted.partition = partition
            wanted.timestamp = Int64(random.next(upTo: 6)) - 3
            request.partitions = [wanted]
            return (try? request.serializedBuffer()) ?? ByteBuffer()
        case .describeTopic:
            var request = Fjord_V1_DescribeTopicRequest()
            request.name = "t"
            return (try? request.serializedBuffer()) ?? ByteBuffer()
        default:
            return randomBytes(&random, count: random.next(upTo: 64))
        }
    }

    private func randomBytes(_ random: inout TestRandom, count: Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        for _ in 0..<count { buffer.writeInteger(UInt8(truncatingIfNeeded: random.next())) }
        return buffer
    }
}

/// A small deterministic generator (SplitMix64), so a failure can be replayed.
struct TestRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func next(upTo bound: Int) -> Int { Int(next() % UInt64(bound)) }
}
