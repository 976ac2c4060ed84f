import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import FjordTLS
import FjordWire
import Foundation
import NIOCore
import SwiftProtobuf
import Testing

/// End to end over real TLS sockets on loopback against a real broker with real files.
@Suite("Broker end to end", .timeLimit(.minutes(2)))
struct BrokerEndToEndTests {
    @Test func produceAndFetchRoundTripAcrossPartitions() async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            #expect(connection.handshake.protocolVersion == 1)
            let topic = try await createTopic(connection, "orders", partitions: 3)
            #expect(topic.partitions.count == 3)
            for partition in UInt32(0)..<3 {
                let batches = (0..<4).map { batch in makeBatch((0..<5).map { "p\(partition)-b\(batch)-r\($0)" }) }
                let acks = try await produce(
                    connection, topic: "orders", partition: partition, batches: batches,
                    acks: partition == 1 ? .durable : .leader)
                #expect(acks.map(\.requestID) == [0, 1, 2, 3])
                #expect(acks.map(\.baseOffset) == [0, 5, 10, 15])
                #expect(acks.map(\.lastOffset) == [4, 9, 14, 19])
                #expect(acks.allSatisfy { !$0.hasError })
            }
            for partition in UInt32(0)..<3 {
                let result = try await fetch(connection, topic: "orders", partition: partition, offset: 7)
                #expect(!result.hasError)
                #expect(result.highWatermark == 20)
                let fetched = values(of: result.records, from: 7)
                #expect(fetched.first == "p\(partition)-b1-r2")
                #expect(fetched.last == "p\(partition)-b3-r4")
                #expect(fetched.count == 13)
            }
            try await connection.close()
        }
    }

    @Test func durableProducesFeedTheFlushLatencyHistogram() async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            try await createTopic(connection, "durable")
            let acks = try await produce(
                connection, topic: "durable", partition: 0, batches: [makeBatch(["a"]), makeBatch(["b"])], acks: .durable)
            #expect(acks.allSatisfy { !$0.hasError })
            let line = broker.broker.metrics.render().split(separator: "\n")
                .first { $0.hasPrefix("fjord_storage_flush_duration_seconds_count") }
            let count = line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
            #expect(count >= 1, "\(line ?? "no flush histogram")")
        }
    }

    @Test func longPollFetchWakesOnAppend() async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            try await createTopic(connection, "events")
            let started = ContinuousClock.now
            async let result = fetch(connection, topic: "events", partition: 0, offset: 0, maxWaitMs: 10_000, minBytes: 1)
            try await Task.sleep(for: .milliseconds(200))
            let producer = try await broker.connect()
            _ = try await produce(producer, topic: "events", partition: 0, batches: [makeBatch(["wake"])])
            let fetched = try await result
            #expect(values(of: fetched.records) == ["wake"])
            #expect(ContinuousClock.now - started < .seconds(5))
            // And an empty long poll ends at max wait with no records.
            let empty = try await fetch(connection, topic: "events", partition: 0, offset: 1, maxWaitMs: 100, minBytes: 1)
            #expect(empty.records.batches.isEmpty)
            #expect(empty.highWatermark == 1)
        }
    }

    @Test func subscriptionSendsOnlyAgainstCredit() async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            try await createTopic(connection, "feed")
            let batches = (0..<10).map { makeBatch(["r\($0)-" + String(repeating: "x", count: 200)]) }
            _ = try await produce(connection, topic: "feed", partition: 0, batches: batches)
            let stream = connection.openStream(.subscribe)
            var request = Fjord_V1_SubscribeRequest()
            request.topic = "feed"
            request.offset = 0
            request.leaderEpoch = -1
            request.creditBytes = 1  // one message, at least one batch
            try await stream.send(request)
            var received: [String] = []
            let first = try #require(try await stream.next())
            received += values(of: try Fjord_V1_SubscribeResponse(buffer: first.payload).records)
            #expect(received.count == 1)
            // No credit left: nothing more is sent until the client grants some.
            let sentBefore = bytesOut(broker)
            try await Task.sleep(for: .milliseconds(300))
            #expect(bytesOut(broker) == sentBefore)
            #expect(sentBefore > 0)
            var credit = Fjord_V1_SubscribeCredit()
            credit.bytes = 1 << 20
            try await stream.send(credit)
            while received.count < 10 {
                let frame = try #require(try await stream.next())
                received += values(of: try Fjord_V1_SubscribeResponse(buffer: frame.payload).records)
            }
            // New appends are pushed as they happen.
            _ = try await produce(connection, topic: "feed", partition: 0, batches: [makeBatch(["live"])])
            let pushed = try #require(try await stream.next())
            #expect(values(of: try Fjord_V1_SubscribeResponse(buffer: pushed.payload).records) == ["live"])
            #expect(received.map { String($0.prefix(3)) } == (0..<10).map { String("r\($0)-".prefix(3)) })
            try await stream.cancel()
        }
    }

    @Test func topicAdministration() async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            try await createTopic(connection, "a", partitions: 2, configs: ["retention.ms": "3600000"])
            try await createTopic(connection, "b")
            let list: Fjord_V1_ListTopicsResponse = try await connection.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            #expect(list.names == ["a", "b"])

            await #expect(throws: FjordClientError.self) { try await createTopic(connection, "a") }
            do { try await createTopic(connection, "bad/name") } catch let error as FjordClientError {
                #expect(error.code == .invalidTopic)
            }
            do { try await createTopic(connection, "c", configs: ["retention.ms": "soon"]) } catch let error as FjordClientError {
                #expect(error.code == .invalidConfig)
                #expect(error.message.contains("retention.ms"))
            }

            var add = Fjord_V1_CreatePartitionsRequest()
            add.name = "a"
            add.totalPartitions = 4
            let added: Fjord_V1_CreatePartitionsResponse = try await connection.unary(.createPartitions, add)
            #expect(added.topic.partitions.count == 4)

            var alter = Fjord_V1_AlterTopicConfigRequest()
            alter.name = "a"
            alter.set = ["segment.bytes": "1048576"]
            alter.remove = ["retention.ms"]
            let altered: Fjord_V1_AlterTopicConfigResponse = try await connection.unary(.alterTopicConfig, alter)
            #expect(altered.topic.configs == ["segment.bytes": "1048576"])
            let acks = try await produce(connection, topic: "a", partition: 3, batches: [makeBatch(["after alter"])])
            #expect(acks.first?.baseOffset == 0 && acks.first?.hasError == false)

            var metadataRequest = Fjord_V1_GetMetadataRequest()
            metadataRequest.topics = ["a", "missing"]
            let metadata: Fjord_V1_GetMetadataResponse = try await connection.unary(.getMetadata, metadataRequest)
            #expect(metadata.brokers.first?.port == UInt32(broker.port))
            #expect(metadata.topics[0].topic.partitions[3].highWatermark == 1)
            #expect(metadata.topics[1].error.code == .unknownTopicOrPartition)

            var delete = Fjord_V1_DeleteTopicRequest()
            delete.name = "a"
            let _: Fjord_V1_DeleteTopicResponse = try await connection.unary(.deleteTopic, delete)
            let after: Fjord_V1_ListTopicsResponse = try await connection.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            #expect(after.names == ["b"])
            #expect(!broker.broker.metrics.render().contains("topic=\"a\""))
            // Re-created under the same name, it starts empty.
            try await createTopic(connection, "a")
            let fresh = try await fetch(connection, topic: "a", partition: 0, offset: 0)
            #expect(fresh.highWatermark == 0)
        }
    }

    @Test func listOffsetsByPositionAndTime() async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            try await createTopic(connection, "t")
            _ = try await produce(
                connection, topic: "t", partition: 0,
                batches: [makeBatch(["a", "b"], timestamp: 1000), makeBatch(["c", "d"], timestamp: 5000)])
            var request = Fjord_V1_ListOffsetsRequest()
            for timestamp: Int64 in [-2, -1, 1001, 5000, 9999] {
                var partition = Fjord_V1_ListOffsetsPartition()
                partition.topic = "t"
                partition.timestamp = timestamp
                partition.leaderEpoch = -1
                request.partitions.append(partition)
            }
            let response: Fjord_V1_ListOffsetsResponse = try await connection.unary(.listOffsets, request)
            #expect(response.partitions.map(\.offset) == [0, 4, 1, 2, -1])
        }
    }

    @Test func restartKeepsDataAndTopics() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-restart-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await withBroker(directory: directory) { broker in
            let connection = try await broker.connect()
            try await createTopic(connection, "keep", partitions: 2)
            _ = try await produce(connection, topic: "keep", partition: 1, batches: [makeBatch(["one", "two"])], acks: .durable)
        }
        #expect(FileManager.default.fileExists(atPath: directory + "/logs/keep-1/.clean-shutdown"))
        try await withBroker(directory: directory) { broker in
            let connection = try await broker.connect()
            let result = try await fetch(connection, topic: "keep", partition: 1, offset: 0)
            #expect(values(of: result.records) == ["one", "two"])
            let acks = try await produce(connection, topic: "keep", partition: 1, batches: [makeBatch(["three"])])
            #expect(acks.first?.baseOffset == 2)
        }
    }

    @Test func gracefulShutdownWithClientsConnected() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-stop-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = Broker(configuration: makeConfiguration(directory: directory))
        try await broker.start()
        let test = TestBroker(broker: broker, directory: directory)
        let connection = try await test.connect()
        try await createTopic(connection, "s")
        let stream = connection.openStream(.subscribe)
        var request = Fjord_V1_SubscribeRequest()
        request.topic = "s"
        request.leaderEpoch = -1
        request.creditBytes = 1 << 20
        try await stream.send(request)
        _ = try await produce(connection, topic: "s", partition: 0, batches: [makeBatch(["x"])])
        _ = try await stream.next()
        await broker.shutdown()
        // The subscription ends when the broker closes the connection; the log was closed cleanly.
        let end = try? await stream.next()
        #expect(end == nil)
        #expect(FileManager.default.fileExists(atPath: directory + "/logs/s-0/.clean-shutdown"))
    }
}

/// Batch bytes the broker has sent to fetchers and subscribers, from its metrics.
func bytesOut(_ broker: TestBroker) -> Int {
    let line = broker.broker.metrics.render().split(separator: "\n").first { $0.hasPrefix("fjord_bytes_out_total ") }
    return line.flatMap { Int(Double($0.split(separator: " ")[1]) ?? -1) } ?? 0
}

extension BrokerEndToEndTests {
    @Test func fetchesFitASmallFrameLimitAndStillCarryRecords() async throws {
        try await withBroker({ $0.maxFrameBytes = 16 * 1024 }) { broker in
            let connection = try await broker.connect()
            try await createTopic(connection, "small-frames")
            let batches = (0..<20).map { batch in makeBatch((0..<10).map { "b\(batch)-r\($0)-" + String(repeating: "s", count: 180) }) }
            _ = try await produce(connection, topic: "small-frames", partition: 0, batches: batches)
            var offset: Int64 = 0
            var fetched: [String] = []
            while offset < 200 {
                let result = try await fetch(connection, topic: "small-frames", partition: 0, offset: offset)
                #expect(!result.hasError)
                let response = Fjord_V1_FetchResponse.with { $0.partitions = [result] }
                let encoded: [UInt8] = try response.serializedBytes()
                #expect(encoded.count <= 16 * 1024)
                let values = values(of: result.records, from: offset)
                try #require(!values.isEmpty, "a fetch at \(offset) under a 16 KiB frame limit returned no records")
                fetched += values
                offset += Int64(values.count)
            }
            #expect(fetched == (0..<20).flatMap { batch in (0..<10).map { "b\(batch)-r\($0)-" + String(repeating: "s", count: 180) } })
        }
    }
}
