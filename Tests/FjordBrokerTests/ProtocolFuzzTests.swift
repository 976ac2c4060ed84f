import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import FjordRecords
import FjordWire
import Foundation
import NIOCore
import SwiftProtobuf
import Testing

/// Protocol-level fuzzing of a real broker over TLS: bursts of mutated frames (header bytes,
/// every request message, record batches mutated with their CRC recomputed, stream misuse,
/// truncated frames), each followed by a canary produce + fetch on a well-behaved connection that
/// must return the canary's exact bytes. At the end every canary is fetched again, unchanged.
///
/// `FJORD_FUZZ_SEED=n` replays another sequence; `FJORD_FUZZ_BURSTS=n` runs more bursts
/// (default 24 of 200 frames).
@Suite("Protocol fuzzing", .timeLimit(.minutes(10)))
struct ProtocolFuzzTests {
    struct Canary {
        var offset: Int64
        var bytes: [UInt8]
    }

    @Test func mutatedFrameBurstsNeverDisturbACanaryRoundTrip() async throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = UInt64(environment["FJORD_FUZZ_SEED"] ?? "") ?? 0xF022_5EED
        let bursts = max(1, Int(environment["FJORD_FUZZ_BURSTS"] ?? "") ?? 24)
        try await withBroker({ $0.maxFrameBytes = 64 * 1024 }) { broker in
            let canaryConnection = try await broker.connect()
            try await createTopic(canaryConnection, "t", partitions: 3)
            try await createTopic(canaryConnection, "canary")
            var random = TestRandom(seed: seed)
            var canaries: [Canary] = []
            var framesSent = 0
            var connectionErrors = 0
            var answers = 0
            for burst in 0..<bursts {
                let (channel, frames) = try await BrokerBadInputTests().rawConnection(broker, encodeFrames: false)
                var out = ByteBuffer()
                var handshake = Fjord_V1_HandshakeRequest()
                handshake.protocolVersion = 1
                write(Frame(streamID: 1, method: Fjord_V1_Method.handshake.id, flags: .endStream, payload: try handshake.serializedBuffer()), to: &out)
                for _ in 0..<200 {
                    mutatedFrames(&random, to: &out)
                    framesSent += 1
                }
                if random.next(upTo: 2) == 0 {
                    // A truncated last frame: a header announcing more than follows.
                    var partial = ByteBuffer()
                    FrameHeader(payloadLength: 500, streamID: 7, method: Fjord_V1_Method.produce.id).write(to: &partial)
                    partial.writeRepeatingByte(0, count: random.next(upTo: 400))
                    out.writeBuffer(&partial)
                }
                // Written in random slices, so frames straddle TLS records and reads.
                while out.readableBytes > 0 {
                    let slice = out.readSlice(length: min(out.readableBytes, 1 + random.next(upTo: 4096)))!
                    guard channel.isActive else { break }
                    channel.write(slice, promise: nil)
                    if random.next(upTo: 4) == 0 { channel.flush() }
                }
                channel.flush()
                try await Task.sleep(for: .milliseconds(50))
                try? await channel.close()
                while let frame = await frames.next() {
                    answers += 1
                    if frame.header.streamID == 0 { connectionErrors += 1 }
                }

                // The canary round trip returns exactly the bytes produced.
                let batch = makeBatch(["canary-\(burst)", String(repeating: "c", count: random.next(upTo: 2000))])
                let acks = try await produce(canaryConnection, topic: "canary", partition: 0, batches: [batch])
                let ack = try #require(acks.first)
                #expect(!ack.hasError, "canary \(burst) was refused: \(ack.error.message)")
                let canary = Canary(offset: ack.baseOffset, bytes: Array(batch.readableBytesView))
                try await expectCanary(canary, burst: burst, connection: canaryConnection)
                canaries.append(canary)
            }
            #expect(framesSent >= 200 * bursts)
            #expect(connectionErrors > 0, "no burst made the broker close its connection")
            #expect(answers > bursts, "the broker answered \(answers) frames")
            print("fuzz: seed \(seed), \(bursts) bursts, \(framesSent) mutated frames, \(answers) frames answered, \(connectionErrors) connections closed with an error, \(canaries.count) canaries intact")
            // No stored canary changed, and the fuzzed topic holds only batches that validate.
            for (burst, canary) in canaries.enumerated() {
                try await expectCanary(canary, burst: burst, connection: canaryConnection)
            }
            for partition in UInt32(0)..<3 {
                var offset: Int64 = 0
                var high: Int64 = 1
                while offset < high {
                    let (highWatermark, batches) = try await rawFetch(canaryConnection, topic: "t", partition: partition, offset: offset)
                    high = highWatermark
                    guard !batches.isEmpty else { break }
                    for batch in batches {
                        let header = batch.withUnsafeBytes { RecordBatchHeader(unsafeHeaderAt: $0.baseAddress!) }
                        let valid = batch.withUnsafeBytes { raw in
                            (try? RecordBatchValidator(maxBatchBytes: 1 << 22).validate(raw)) != nil
                        }
                        #expect(valid, "t-\(partition) holds an invalid batch at \(header.baseOffset)")
                        offset = header.lastOffset + 1
                    }
                }
            }
            try await BrokerBadInputTests().expectHealthy(broker)
            try await canaryConnection.close()
        }
    }

    /// Fetches the canary at its offset: the stored batch is the produced one with only the
    /// stamped fields (base offset, leader epoch, log-append time) changed.
    func expectCanary(_ canary: Canary, burst: Int, connection: FjordConnection) async throws {
        let (_, batches) = try await rawFetch(connection, topic: "canary", partition: 0, offset: canary.offset)
        let stored = try #require(batches.first, "canary \(burst) is missing")
        #expect(stored.count == canary.bytes.count, "canary \(burst) came back \(stored.count) bytes long, not \(canary.bytes.count)")
        let unstamped = RecordBatchLayout.crc32c - 1  // the CRC's tag; everything from there on is as produced
        #expect(stored.dropFirst(unstamped) == canary.bytes.dropFirst(unstamped), "canary \(burst) came back with other bytes")
    }

    /// A fetch of one partition, returning the high watermark and the stored batches' exact bytes.
    func rawFetch(_ connection: FjordConnection, topic: String, partition: UInt32, offset: Int64) async throws -> (Int64, [[UInt8]]) {
        let request = Fjord_V1_FetchRequest.with {
            $0.partitions = [Fjord_V1_FetchPartition.with {
                $0.topic = topic
                $0.partition = partition
                $0.offset = offset
                $0.leaderEpoch = -1
            }]
        }
        let stream = connection.openStream(.fetch)
        try await stream.send(request, endOfStream: true)
        let frame = try #require(try await stream.next())
        let decoded = try Fjord_V1_FetchResponse(buffer: frame.payload)
        #expect(decoded.partitions.first?.hasError == false, "\(topic)-\(partition): \(decoded.partitions.first?.error.message ?? "no result")")
        var batches: [[UInt8]] = []
        frame.payload.withUnsafeReadableBytes { raw in
            var response = ProtobufWireReader(raw)
            while !response.isAtEnd, let result = response.readField() {
                guard result.number == 1, result.wireType == 2 else { continue }
                var fields = ProtobufWireReader(UnsafeRawBufferPointer(rebasing: raw[result.payload]))
                let base = result.payload.lowerBound
                while !fields.isAtEnd, let field = fields.readField() {
                    guard field.number == 6, field.wireType == 2 else { continue }
                    let set = UnsafeRawBufferPointer(rebasing: raw[(base + field.payload.lowerBound)..<(base + field.payload.upperBound)])
                    var iterator = FramedBatchIterator(set)
                    while let element = iterator.next() { batches.append(Array(element.batch.bytes)) }
                }
            }
        }
        return (decoded.partitions.first?.highWatermark ?? 0, batches)
    }

    private func write(_ frame: Frame, to out: inout ByteBuffer) {
        FrameHeader(
            payloadLength: UInt32(frame.payload.readableBytes), streamID: frame.header.streamID, method: frame.header.method,
            flags: frame.header.flags
        ).write(to: &out)
        var payload = frame.payload
        out.writeBuffer(&payload)
    }

    /// Appends one or a few frames, mutated one of several ways.
    private func mutatedFrames(_ random: inout TestRandom, to out: inout ByteBuffer) {
        let methods: [Fjord_V1_Method] = [
            .getMetadata, .createTopic, .deleteTopic, .listTopics, .describeTopic, .createPartitions, .alterTopicConfig,
            .produce, .produce, .fetch, .subscribe, .listOffsets, .initProducerID, .handshake,
        ]
        let method = methods[random.next(upTo: methods.count)]
        let streamID = UInt32(random.next(upTo: 30) * 2 + 3)
        var payload = request(method, &random)
        // Header damage usually closes the connection, so it is rare: the rest of a burst gets through.
        switch random.next(upTo: 60) == 0 ? 0 : 1 + random.next(upTo: 5) {
        case 0:
            // Header bytes: any of the 12 changed (length, stream, method, flags, reserved).
            var bytes = ByteBuffer()
            write(Frame(streamID: streamID, method: method.id, flags: .endStream, payload: payload), to: &bytes)
            let index = random.next(upTo: FrameHeader.size)
            bytes.setInteger(bytes.getInteger(at: index, as: UInt8.self)! ^ UInt8(1 + random.next(upTo: 255)), at: index)
            out.writeBuffer(&bytes)
        case 1:
            // Payload bytes flipped.
            for _ in 0..<(1 + random.next(upTo: 3)) where payload.readableBytes > 0 {
                let index = random.next(upTo: payload.readableBytes)
                payload.setInteger(payload.getInteger(at: index, as: UInt8.self)! ^ UInt8(1 + random.next(upTo: 255)), at: index)
            }
            write(Frame(streamID: streamID, method: method.id, flags: .endStream, payload: payload), to: &out)
        case 2:
            // A record batch changed past its header, then given a correct CRC again.
            var batch = makeBatch((0..<(1 + random.next(upTo: 4))).map { "m\($0)" })
            for _ in 0..<(1 + random.next(upTo: 3)) {
                let index = RecordBatchLayout.crcCoveredFrom + random.next(upTo: batch.readableBytes - RecordBatchLayout.crcCoveredFrom)
                batch.setInteger(batch.getInteger(at: index, as: UInt8.self)! ^ UInt8(1 + random.next(upTo: 255)), at: index)
            }
            let crc = batch.withUnsafeReadableBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchLayout.crcCoveredFrom...])) }
            batch.setInteger(crc, at: RecordBatchLayout.crc32c, endianness: .little)
            let request = produceRequest(topic: "t", partition: UInt32(random.next(upTo: 3)), requestID: 1, batch: batch)
            write(Frame(streamID: streamID, method: Fjord_V1_Method.produce.id, flags: .endStream, payload: request), to: &out)
        case 3:
            // Stream misuse: frames after END_STREAM, other methods on the stream, cancels, a stream
            // id reused, ERROR from the client.
            let misuse: [(UInt16, FrameFlags)] = [
                (method.id, []), (method.id, .endStream), (Fjord_V1_Method.produce.id, []), (method.id, .cancel),
                (method.id, .error), (Fjord_V1_Method.listTopics.id, .endStream),
            ]
            for _ in 0..<(2 + random.next(upTo: 4)) {
                let (id, flags) = misuse[random.next(upTo: misuse.count)]
                write(Frame(streamID: streamID, method: id, flags: flags, payload: payload), to: &out)
            }
        case 4:
            // A valid request, on a stream that may be open already.
            write(Frame(streamID: streamID, method: method.id, flags: .endStream, payload: payload), to: &out)
        default:
            // Random bytes as the payload of a well-formed header.
            var bytes = ByteBuffer()
            for _ in 0..<random.next(upTo: 200) { bytes.writeInteger(UInt8(truncatingIfNeeded: random.next())) }
            write(Frame(streamID: streamID, method: method.id, flags: .endStream, payload: bytes), to: &out)
        }
    }

    /// A valid request of `method`, with random values.
    private func request(_ method: Fjord_V1_Method, _ random: inout TestRandom) -> ByteBuffer {
        let name = ["t", "u", "canary-not", "x"][random.next(upTo: 4)]
        let partition = UInt32(random.next(upTo: 4))
        func encoded(_ message: some SwiftProtobuf.Message) -> ByteBuffer { (try? message.serializedBuffer()) ?? ByteBuffer() }
        switch method {
        case .handshake: return encoded(Fjord_V1_HandshakeRequest.with { $0.protocolVersion = UInt32(random.next(upTo: 3)) })
        case .getMetadata: return encoded(Fjord_V1_GetMetadataRequest.with { $0.topics = [name] })
        case .createTopic:
            return encoded(Fjord_V1_CreateTopicRequest.with {
                $0.name = name
                $0.partitions = UInt32(random.next(upTo: 4))
            })
        // Never the topics the test reads back.
        case .deleteTopic: return encoded(Fjord_V1_DeleteTopicRequest.with { $0.name = name == "t" ? "u" : name })
        case .listTopics: return ByteBuffer()
        case .describeTopic: return encoded(Fjord_V1_DescribeTopicRequest.with { $0.name = name })
        case .createPartitions:
            return encoded(Fjord_V1_CreatePartitionsRequest.with {
                $0.name = name == "t" ? "u" : name
                $0.totalPartitions = UInt32(random.next(upTo: 6))
            })
        case .alterTopicConfig:
            return encoded(Fjord_V1_AlterTopicConfigRequest.with {
                $0.name = name == "t" ? "u" : name
                $0.set = ["retention.ms": ["-1", "0", "x", "3600000"][random.next(upTo: 4)]]
            })
        case .produce:
            let batch = makeBatch((0..<(1 + random.next(upTo: 5))).map { "r\($0)" })
            return produceRequest(topic: name, partition: partition, requestID: UInt64(random.next(upTo: 100)), batch: batch)
        case .fetch:
            return encoded(Fjord_V1_FetchRequest.with {
                $0.partitions = [Fjord_V1_FetchPartition.with {
                    $0.topic = name
                    $0.partition = partition
                    $0.offset = Int64(random.next(upTo: 40)) - 5
                    $0.leaderEpoch = Int32(random.next(upTo: 3)) - 1
                    $0.maxBytes = UInt32(random.next(upTo: 100_000))
                }]
                $0.maxWaitMs = UInt32(random.next(upTo: 20))
            })
        case .subscribe:
            return encoded(Fjord_V1_SubscribeRequest.with {
                $0.topic = name
                $0.partition = partition
                $0.leaderEpoch = -1
                $0.creditBytes = UInt64(random.next(upTo: 50_000))
            })
        case .listOffsets:
            return encoded(Fjord_V1_ListOffsetsRequest.with {
                $0.partitions = [Fjord_V1_ListOffsetsPartition.with {
                    $0.topic = name
                    $0.partition = partition
                    $0.timestamp = Int64(random.next(upTo: 6)) - 3
                }]
            })
        case .initProducerID:
            return encoded(Fjord_V1_InitProducerIdRequest.with {
                $0.producerID = Int64(random.next(upTo: 5)) - 2
                $0.producerEpoch = Int32(random.next(upTo: 5)) - 2
            })
        default: return ByteBuffer()
        }
    }
}

