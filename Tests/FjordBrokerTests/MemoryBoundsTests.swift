@testable import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import FjordWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Scaled-down versions of the memory abuses of `tools/stress/memory_abuse.py`: clients that do
/// not read what they asked for, credit smaller than a batch, frames that never complete, and
/// pipelined `/metrics` requests. The broker's own count of queued bytes stays under its caps,
/// the process's anonymous memory stays bounded, and another client keeps its round trips.
@Suite("Memory bounds", .serialized, .timeLimit(.minutes(2)))
struct MemoryBoundsTests {
    static let connectionLimit = 256 << 10
    static let brokerLimit = 8 << 20
    /// One fetch response or subscription message may overshoot the broker cap.
    static let largestResponse = 8 << 20

    func configure(_ configuration: inout BrokerConfiguration) {
        configuration.maxQueuedBytesPerConnection = Self.connectionLimit
        configuration.maxQueuedBytes = Self.brokerLimit
    }

    /// Topic `big`: 8 batches of about 1 MB.
    func fillBigTopic(_ connection: FjordConnection) async throws {
        try await createTopic(connection, "big")
        let batch = makeBatch(Array(repeating: String(repeating: "v", count: 1000), count: 1000))
        _ = try await produce(connection, topic: "big", partition: 0, batches: Array(repeating: batch, count: 8))
    }

    func handshaken(_ broker: TestBroker) async throws -> (any Channel, RawFrames) {
        try await broker.rawHandshakenConnection()
    }

    /// A client's produce-then-fetch round trips while the abuse goes on; returns the slowest.
    func slowestRoundTrip(_ broker: TestBroker, count: Int = 20) async throws -> Duration {
        let connection = try await broker.connect()
        let topic = "bystander-\(UUID().uuidString.prefix(8).lowercased())"
        try await createTopic(connection, topic)
        var slowest = Duration.zero
        let clock = ContinuousClock()
        for index in 0..<count {
            let started = clock.now
            let acks = try await produce(connection, topic: topic, partition: 0, batches: [makeBatch(["ping-\(index)"])])
            let offset = try #require(acks.first).baseOffset
            let fetched = try await fetch(connection, topic: topic, partition: 0, offset: offset)
            #expect(values(of: fetched.records, from: offset) == ["ping-\(index)"])
            slowest = max(slowest, clock.now - started)
        }
        try await connection.close()
        return slowest
    }

    func waitUntil(_ condition: () -> Bool, timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
    }

    func fetchFrame(streamID: UInt32, topic: String, maxBytes: UInt32) throws -> Frame {
        var wanted = Fjord_V1_FetchPartition()
        wanted.topic = topic
        wanted.leaderEpoch = -1
        wanted.maxBytes = maxBytes
        var request = Fjord_V1_FetchRequest()
        request.partitions = [wanted]
        request.maxBytes = maxBytes
        return Frame(streamID: streamID, method: Fjord_V1_Method.fetch.id, payload: try request.serializedBuffer())
    }

    func subscribeFrame(streamID: UInt32, topic: String, credit: UInt64) throws -> Frame {
        var subscribe = Fjord_V1_SubscribeRequest()
        subscribe.topic = topic
        subscribe.leaderEpoch = -1
        subscribe.creditBytes = credit
        return Frame(streamID: streamID, method: Fjord_V1_Method.subscribe.id, payload: try subscribe.serializedBuffer())
    }

    /// 24 connections each send `requests` and never read; the broker's queued bytes stay under
    /// its cap, its memory bounded, a bystander's round trips fast, and closing releases it all.
    func expectBoundedWhileNeverRead(_ requests: @escaping () throws -> [Frame]) async throws {
        try await withBroker(configure) { broker in
            let admin = try await broker.connect()
            try await fillBigTopic(admin)
            let before = residentAnonymousBytes()
            var abusers: [any Channel] = []
            for _ in 0..<24 {
                let (channel, _) = try await handshaken(broker)
                try await channel.setOption(.autoRead, value: false).get()
                for frame in try requests() { channel.write(frame, promise: nil) }
                channel.flush()
                abusers.append(channel)
            }
            try await Task.sleep(for: .seconds(1))
            let queued = broker.broker.queuedResponseBytes
            #expect(queued > 0)
            #expect(queued <= Self.brokerLimit + Self.largestResponse, "\(queued) bytes queued toward clients")
            let slowest = try await slowestRoundTrip(broker)
            #expect(slowest < .seconds(1), "a bystander's round trip took \(slowest)")
            let growth = residentAnonymousBytes() - before
            #expect(growth < 128 << 20, "anonymous memory grew by \(growth >> 20) MiB")
            // All at once: each TLS close waits (up to its timeout) for a close_notify the broker,
            // not reading these connections, does not send.
            for channel in abusers { channel.close(promise: nil) }
            try await waitUntil { broker.broker.queuedResponseBytes == 0 }
            #expect(broker.broker.queuedResponseBytes == 0, "closing the connections releases what they held")
            try await admin.close()
        }
    }

    @Test func fetchesThatAreNeverReadAreNotBufferedFor() async throws {
        // 24 connections x 4 fetches of 8 MB each: 768 MB if buffered.
        try await expectBoundedWhileNeverRead {
            try (0..<4).map { try fetchFrame(streamID: UInt32(3 + 2 * $0), topic: "big", maxBytes: 8 << 20) }
        }
    }

    @Test func subscriptionsThatAreNeverReadAreNotBufferedFor() async throws {
        // 24 connections x 4 subscriptions with unlimited credit.
        try await expectBoundedWhileNeverRead {
            try (0..<4).map { try subscribeFrame(streamID: UInt32(3 + 2 * $0), topic: "big", credit: 1 << 40) }
        }
    }

    @Test func creditSmallerThanABatchLetsThatBatchOutOncePerStream() async throws {
        try await withBroker(configure) { broker in
            let admin = try await broker.connect()
            try await fillBigTopic(admin)
            let (channel, frames) = try await handshaken(broker)
            try await channel.setOption(.autoRead, value: false).get()
            let streams = (0..<40).map { UInt32(3 + 2 * $0) }
            for stream in streams { channel.write(try subscribeFrame(streamID: stream, topic: "big", credit: 1), promise: nil) }
            channel.flush()
            try await Task.sleep(for: .milliseconds(500))
            // 40 streams of about 1 MB each, unread: at most the connection's limit plus one message is queued.
            let queued = broker.broker.queuedResponseBytes
            #expect(queued > 0)
            #expect(queued <= Self.connectionLimit + (1 << 20) + 4096, "\(queued) bytes queued for one connection")
            // Reading now: every stream gets exactly one batch, and nothing more.
            try await channel.setOption(.autoRead, value: true).get()
            var received: [UInt32: Int] = [:]
            for _ in streams {
                guard let frame = await frames.next() else { break }
                let message = try Fjord_V1_SubscribeResponse(buffer: frame.payload)
                received[frame.header.streamID, default: 0] += message.records.batches.count
            }
            #expect(received.count == streams.count)
            #expect(received.values.allSatisfy { $0 == 1 })
            // One more byte of credit only pays off part of the deficit: still nothing.
            var credit = Fjord_V1_SubscribeCredit()
            credit.bytes = 1
            try await channel.writeAndFlush(
                Frame(streamID: streams[0], method: Fjord_V1_Method.subscribe.id, payload: try credit.serializedBuffer()))
            // A grant covering the deficit and the next batch: exactly the next batch.
            credit.bytes = 2_100_000
            try await channel.writeAndFlush(
                Frame(streamID: streams[1], method: Fjord_V1_Method.subscribe.id, payload: try credit.serializedBuffer()))
            let next = try #require(await frames.next())
            #expect(next.header.streamID == streams[1])
            // Whatever else comes in the next 500 ms, then the connection closes.
            channel.eventLoop.scheduleTask(in: .milliseconds(500)) { channel.close(promise: nil) }
            var extra: [UInt32] = []
            while true {
                guard let frame = await frames.next() else { break }
                extra.append(frame.header.streamID)
            }
            #expect(extra.allSatisfy { $0 == streams[1] }, "frames after the grants: \(extra)")
            try await admin.close()
        }
    }

    @Test func aFrameThatDoesNotCompleteInTimeClosesTheConnection() async throws {
        try await withBroker({ $0.requestTimeoutMilliseconds = 500 }) { broker in
            let (channel, frames) = try await BrokerBadInputTests().rawConnection(broker, encodeFrames: false)
            var handshake = Fjord_V1_HandshakeRequest()
            handshake.protocolVersion = 1
            var bytes = ByteBuffer()
            let payload = try handshake.serializedBuffer()
            FrameHeader(payloadLength: UInt32(payload.readableBytes), streamID: 1, method: Fjord_V1_Method.handshake.id, flags: .endStream)
                .write(to: &bytes)
            bytes.writeImmutableBuffer(payload)
            // Then a header announcing 4 MiB, followed by a trickle.
            FrameHeader(payloadLength: 4 << 20, streamID: 3, method: Fjord_V1_Method.produce.id).write(to: &bytes)
            try await channel.writeAndFlush(bytes)
            _ = try #require(await frames.next())
            let started = ContinuousClock.now
            let trickle = Task {
                while channel.isActive {
                    try? await channel.writeAndFlush(ByteBuffer(bytes: [0, 0, 0, 0]))
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            let error = try #require(await frames.next())
            let elapsed = ContinuousClock.now - started
            trickle.cancel()
            #expect(error.header.streamID == 0 && error.header.flags.contains(.error))
            #expect(try Fjord_V1_Error(buffer: error.payload).code == .requestTimedOut)
            #expect(elapsed >= .milliseconds(400) && elapsed < .seconds(5), "closed after \(elapsed)")
            try await waitUntil { broker.broker.queuedRequestBytes == 0 }
            #expect(broker.broker.queuedRequestBytes == 0, "the partial frame's bytes are released")
            try await BrokerBadInputTests().expectHealthy(broker)
        }
    }

    @Test func manyPartialFramesStopBeingReadPastTheRequestBudget() async throws {
        try await withBroker({
            $0.maxQueuedRequestBytes = 4 << 20
            $0.requestTimeoutMilliseconds = 3000
        }) { broker in
            var abusers: [any Channel] = []
            // 20 connections each send 2 MB of a 4 MiB frame as fast as they can.
            for _ in 0..<20 {
                let (channel, frames) = try await BrokerBadInputTests().rawConnection(broker, encodeFrames: false)
                var bytes = ByteBuffer()
                var handshake = Fjord_V1_HandshakeRequest()
                handshake.protocolVersion = 1
                let payload = try handshake.serializedBuffer()
                FrameHeader(payloadLength: UInt32(payload.readableBytes), streamID: 1, method: 1, flags: .endStream).write(to: &bytes)
                bytes.writeImmutableBuffer(payload)
                FrameHeader(payloadLength: 4 << 20, streamID: 3, method: Fjord_V1_Method.produce.id).write(to: &bytes)
                bytes.writeRepeatingByte(7, count: 2 << 20)
                channel.writeAndFlush(bytes, promise: nil)
                _ = await frames.next()
                abusers.append(channel)
            }
            try await Task.sleep(for: .seconds(1))
            let held = broker.broker.queuedRequestBytes
            // Past the 4 MiB budget only connections holding at most 64 KiB (plus one read) are read.
            #expect(held <= (4 << 20) + 20 * (256 << 10), "\(held) request bytes held")
            let slowest = try await slowestRoundTrip(broker, count: 5)
            #expect(slowest < .seconds(1))
            // Connections that are not read notice no close: request.timeout.ms ends them.
            for channel in abusers { channel.close(promise: nil) }
            try await waitUntil { broker.broker.queuedRequestBytes == 0 }
            #expect(broker.broker.queuedRequestBytes == 0)
        }
    }

    @Test func pipelinedMetricsRequestsAreAnsweredOneAtATime() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let metrics = BrokerMetrics()
        let server = OperationsServer(
            host: "127.0.0.1", port: 0, metrics: metrics, health: { HealthStatus(isHealthy: true) }, group: group,
            logger: Logger(label: "test.operations"))
        try await server.start()
        let port = try #require(server.port)
        let counter = HTTPResponseCounter()
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(counter) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        // Enough requests that their responses, all queued, would take 128 MiB.
        let requests = min(60_000, max(2_000, (128 << 20) / max(1, metrics.renderBytes().count)))
        let before = residentAnonymousBytes()
        var buffer = ByteBuffer()
        for _ in 0..<requests { buffer.writeString("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") }
        channel.writeAndFlush(buffer, promise: nil)
        try await Task.sleep(for: .seconds(1))
        let growth = residentAnonymousBytes() - before
        // Unlimited, each ~KB-sized response would be queued: tens of MB.
        #expect(growth < 24 << 20, "anonymous memory grew by \(growth >> 20) MiB")
        try await channel.setOption(.autoRead, value: true).get()
        channel.read()
        let deadline = ContinuousClock.now + .seconds(30)
        while counter.responses.load(ordering: .relaxed) < requests, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(counter.responses.load(ordering: .relaxed) == requests, "every pipelined request is answered in the end")
        try await channel.close()
        try await server.stop()
    }
}

/// Counts `HTTP/1.1 200` status lines in a byte stream.
final class HTTPResponseCounter: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let responses = Atomic<Int>(0)
    private let tail = Mutex<[UInt8]>([])
    private static let marker = Data("HTTP/1.1 200".utf8)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let found = tail.withLock { tail -> Int in
            var scan = Data(tail)
            buffer.withUnsafeReadableBytes { scan.append(contentsOf: $0) }
            var count = 0
            var start = scan.startIndex
            while let range = scan.range(of: Self.marker, in: start..<scan.endIndex) {
                count += 1
                start = range.upperBound
            }
            tail = Array(scan.suffix(Self.marker.count - 1))
            return count
        }
        responses.add(found, ordering: .relaxed)
    }
}

/// The process's anonymous resident memory (`RssAnon` of `/proc/self/status`), in bytes.
func residentAnonymousBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("RssAnon:") {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * 1024
    }
    return 0
}
