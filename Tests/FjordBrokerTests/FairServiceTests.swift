import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import FjordTLS
import FjordWire
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Fair service with a real broker over TLS on loopback: flooding producers do not starve a
/// bystander, bare TCP connections do not keep valid clients out, idle connections are closed,
/// the per-address limit holds, and quotas throttle with `throttle_time_ms`.
@Suite("Fair service", .serialized, .timeLimit(.minutes(3)))
struct FairServiceTests {
    /// Milliseconds since `start`.
    static func milliseconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    }

    static func percentile(_ values: [Double], _ p: Double) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
    }

    @Test func eightFloodingProducersDoNotStarveABystander() async throws {
        try await withBroker { broker in
            let admin = try await broker.connect()
            try await createTopic(admin, "flood")
            let stop = SharedFlag()
            let floodAcks = SharedCount()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for flooder in 0..<8 {
                    let connection = try await broker.connect()
                    group.addTask {
                        // Pipelined small batches, 64 per write, as fast as the broker takes them;
                        // the acks are read by a second task so the flooder never waits for them.
                        let stream = connection.openStream(.produce)
                        let batch = makeBatch([String(repeating: "f", count: 100)])
                        try await withThrowingTaskGroup(of: Void.self) { inner in
                            inner.addTask {
                                // Ends when the connection closes.
                                while let frame = try? await stream.next() {
                                    if frame.header.flags.contains(.endStream) { break }
                                    floodAcks.add(1)
                                }
                            }
                            // The same 64 requests each time (request ids repeat): the client's CPU goes to sending.
                            let frames = (0..<64).map { index in
                                Frame(
                                    streamID: stream.id, method: Fjord_V1_Method.produce.id,
                                    payload: produceRequest(
                                        topic: "flood", partition: 0, requestID: UInt64(flooder) << 40 + UInt64(index),
                                        batch: batch))
                            }
                            while !stop.isSet {
                                try await connection.sendFrames(frames)
                            }
                            try await connection.close()
                            inner.cancelAll()
                        }
                    }
                }
                // Let the flood build up, then measure the bystander's single-record round trips.
                try await Task.sleep(for: .milliseconds(500))
                let bystander = try await broker.connect()
                var roundTrips: [Double] = []
                // Flood batches acknowledged while one bystander request was on its way: with one
                // FIFO in front of storage it waited behind the whole backlog (up to 64 MiB of small
                // batches per flooder); with fair turns, behind about one turn of each flooder.
                var floodAcksDuring: [Double] = []
                for index in 0..<50 {
                    let started = ContinuousClock.now
                    let floodAcksBefore = floodAcks.value
                    let acks = try await produce(bystander, topic: "flood", partition: 0, batches: [makeBatch(["b\(index)"])])
                    roundTrips.append(Self.milliseconds(since: started))
                    floodAcksDuring.append(Double(floodAcks.value - floodAcksBefore))
                    #expect(acks.count == 1 && !acks[0].hasError)
                }
                var connects: [Double] = []
                for _ in 0..<5 {
                    let started = ContinuousClock.now
                    let newcomer = try await broker.connect()
                    let _: Fjord_V1_ListTopicsResponse = try await newcomer.unary(.listTopics, Fjord_V1_ListTopicsRequest())
                    connects.append(Self.milliseconds(since: started))
                    try await newcomer.close()
                }
                stop.set()
                try await group.waitForAll()
                let p50 = Self.percentile(roundTrips, 0.5)
                let p99 = Self.percentile(roundTrips, 0.99)
                let connectMax = connects.max() ?? 0
                let overtaken = Self.percentile(floodAcksDuring, 0.5)
                print(
                    "fairness: 8 flooders acked \(floodAcks.value) batches; bystander round trip p50 \(p50) ms p99 \(p99) ms, flood acks during one round trip p50 \(overtaken); new connection + list_topics max \(connectMax) ms"
                )
                #expect(floodAcks.value > 1000, "the flood was not a flood")
                #expect(overtaken < 5000, "the bystander waited behind \(overtaken) flood batches")
                // Generous bounds: a debug build, flooders and broker in one process, on a shared
                // 2-core machine, beside the rest of the suite (the release figures are in
                // tools/stress/fairness.py's output). `overtaken` above is the load-independent check.
                #expect(p50 < 2000, "bystander p50 \(p50) ms")
                #expect(p99 < 10000, "bystander p99 \(p99) ms")
                // A new connection's TLS handshake competes with eight flooders in this process; under a
                // loaded CI machine it took 5.3 s once (2026-12-02), so the bound is that of p99.
                #expect(connectMax < 10000, "new connection \(connectMax) ms")
                try await bystander.close()
            }
            try await admin.close()
        }
    }

    @Test func bareTCPConnectionsDoNotKeepValidClientsOut() async throws {
        try await withBroker({ $0.maxHandshakingConnections = 32 }) { broker in
            let group = MultiThreadedEventLoopGroup.singleton
            let stop = SharedFlag()
            let bareOpened = SharedCount()
            async let flood: [any Channel] = {
                // A peer on the same address opens TCP connections and never starts TLS.
                var channels: [any Channel] = []
                while !stop.isSet, channels.count < 2000 {
                    if let channel = try? await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: broker.port).get() {
                        channels.append(channel)
                        bareOpened.add(1)
                    }
                }
                return channels
            }()
            while bareOpened.value < 100 { try await Task.sleep(for: .milliseconds(5)) }
            var succeeded = 0
            let attempts = 100
            for _ in 0..<attempts {
                do {
                    let connection = try await broker.connect()
                    let _: Fjord_V1_ListTopicsResponse = try await connection.unary(.listTopics, Fjord_V1_ListTopicsRequest())
                    succeeded += 1
                    try await connection.close()
                } catch {
                    print("fairness: a valid client failed to connect: \(error)")
                }
            }
            stop.set()
            let channels = await flood
            print("fairness: \(channels.count) bare TCP connections opened; \(succeeded) of \(attempts) valid clients connected")
            #expect(channels.count >= 100)
            #expect(succeeded >= 99)
            // The bare connections were closed to make room (at most the pool's 32 remain open).
            try await Task.sleep(for: .milliseconds(200))
            #expect(channels.filter(\.isActive).count <= 32)
            for channel in channels { try? await channel.close() }
        }
    }

    @Test func anIdleConnectionIsClosedAndABusyOneIsNot() async throws {
        try await withBroker({ $0.connectionsMaxIdleMilliseconds = 300 }) { broker in
            let busy = try await broker.connect()
            try await createTopic(busy, "t")
            // Requests every 100 ms keep a connection alive past the idle time, from the start.
            let keepAlive = Task {
                while !Task.isCancelled {
                    let _: Fjord_V1_ListTopicsResponse = try await busy.unary(.listTopics, Fjord_V1_ListTopicsRequest())
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            let (idle, frames) = try await broker.rawHandshakenConnection()
            let started = ContinuousClock.now
            // A subscription waiting for appends is a use of the connection, however quiet.
            let (subscribed, pushes) = try await broker.rawHandshakenConnection()
            var subscribe = Fjord_V1_SubscribeRequest()
            subscribe.topic = "t"
            subscribe.leaderEpoch = -1
            subscribe.creditBytes = 1 << 20
            try await subscribed.writeAndFlush(
                Frame(streamID: 3, method: Fjord_V1_Method.subscribe.id, payload: try subscribe.serializedBuffer()))

            let frame = try #require(await frames.next())
            #expect(frame.header.streamID == 0 && frame.header.flags.contains(.error))
            let error = try Fjord_V1_Error(buffer: frame.payload)
            #expect(error.code == .requestTimedOut)
            #expect(error.message.contains("connections.max.idle.ms"))
            try await idle.closeFuture.get()
            let closedAfter = Self.milliseconds(since: started)
            #expect(closedAfter >= 200 && closedAfter < 3000, "closed after \(closedAfter) ms")

            try await Task.sleep(for: .milliseconds(800))
            keepAlive.cancel()
            #expect(busy.isActive)
            #expect(subscribed.isActive)
            // The subscription still gets what is appended.
            _ = try await produce(busy, topic: "t", partition: 0, batches: [makeBatch(["late"])])
            let pushed = try #require(await pushes.next())
            #expect(pushed.header.streamID == 3 && !pushed.header.flags.contains(.error))
            try await subscribed.close()
            try await busy.close()
        }
    }

    @Test func connectionsPerAddressAreLimited() async throws {
        try await withBroker({ $0.maxConnectionsPerAddress = 2 }) { broker in
            let first = try await broker.connect()
            let second = try await broker.connect()
            do {
                let third = try await broker.connect()
                try? await third.close()
                Issue.record("a third connection from 127.0.0.1 was served with max.connections.per.address = 2")
            } catch let error as FjordClientError {
                #expect(error.code == .tooManyConnections)
                #expect(error.message.contains("max.connections.per.address"))
            }
            try await second.close()
            let newcomer = try await broker.connectOnceServed()
            let _: Fjord_V1_ListTopicsResponse = try await newcomer.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            try await newcomer.close()
            try await first.close()
        }
    }

    @Test func aProducerOverItsQuotaIsThrottledAndTold() async throws {
        let quota = 256 * 1024
        try await withBroker({ $0.producerQuotaBytesPerSecond = quota; $0.consumerQuotaBytesPerSecond = quota }) { broker in
            let connection = try await broker.connect()
            try await createTopic(connection, "q")
            let value = String(repeating: "q", count: 64 * 1024)
            let started = ContinuousClock.now
            let acks = try await produce(connection, topic: "q", partition: 0, batches: (0..<10).map { _ in makeBatch([value]) })
            // The acks come at once; the connection is then not read until the throttle ends. A
            // socket read already asked for when the throttle began still happens (NIO cannot take
            // it back), so the first request after it may be answered; the second waits.
            for _ in 0..<2 {
                let _: Fjord_V1_ListTopicsResponse = try await connection.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            }
            let elapsed = Self.milliseconds(since: started)
            #expect(acks.count == 10 && acks.allSatisfy { !$0.hasError })
            let throttles = acks.map(\.throttleTimeMs)
            print("fairness: produce quota \(quota) B/s: 640 KiB and the next request took \(elapsed) ms; throttle_time_ms \(throttles)")
            // One second's worth (256 KiB) is free; the other 384 KiB cost 1.5 s in all: the time
            // the connection was not read meanwhile plus the throttle the last ack reports.
            #expect(throttles.first == 0)
            #expect((throttles.max() ?? 0) > 0)
            #expect(elapsed >= 400, "reads were not paused: \(elapsed) ms")
            #expect(elapsed + Double(throttles.last ?? 0) >= 1400, "\(elapsed) ms + \(throttles.last ?? 0) ms")

            // A fetch of the 640 KiB is over the consumer quota too.
            var request = Fjord_V1_FetchRequest()
            var wanted = Fjord_V1_FetchPartition()
            wanted.topic = "q"
            wanted.leaderEpoch = -1
            wanted.maxBytes = 4 << 20
            request.partitions = [wanted]
            request.maxBytes = 4 << 20
            let response: Fjord_V1_FetchResponse = try await connection.unary(.fetch, request)
            #expect(response.partitions.first?.records.batches.count == 10)
            #expect(response.throttleTimeMs >= 1000, "fetch throttle_time_ms \(response.throttleTimeMs)")
            try await connection.close()
        }
    }
}

/// A flag tasks share.
final class SharedFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// A count tasks share.
final class SharedCount: Sendable {
    private let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .relaxed) }
    func add(_ amount: Int) { count.add(amount, ordering: .relaxed) }
}
