import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import FjordRecords
import FjordWire
import NIOCore
import Foundation
import Testing

/// The SDK against a real broker over TLS on loopback.
@Suite("Producer and consumer against a broker")
struct ProducerConsumerTests {
    @Test func recordsKeepTheirOrderPerPartitionAndKeysLandOnTheirMurmur2Partition() async throws {
        try await withBrokerAndClient { _, client in
            try await client.admin.createTopic("orders", partitions: 4)
            let producer = client.makeProducer()
            let keys = (0..<20).map { "customer-\($0)" }
            for i in 0..<400 {
                let key = keys[i % keys.count]
                try await producer.enqueue(
                    ProducerRecord(
                        topic: "orders", key: Array(key.utf8), value: Array("\(key):\(i)".utf8),
                        headers: [RecordHeader(key: "n", value: Array("\(i)".utf8))], timestamp: 1_700_000_000_000 + Int64(i)))
            }
            let last = try await producer.send(ProducerRecord(topic: "orders", key: "customer-0", value: "customer-0:last"))
            #expect(last.partition == Partitioner.partition(forKey: Array("customer-0".utf8), partitionCount: 4))
            try await producer.close()

            let records = try await consumeAll(client, topic: "orders", partitions: 4, count: 401)
            #expect(records.count == 401)
            var lastIndexPerKey: [String: Int] = [:]
            var lastOffsetPerPartition: [Int: Int64] = [:]
            for record in records {
                let key = String(decoding: record.key ?? [], as: UTF8.self)
                #expect(record.partition == Partitioner.partition(forKey: record.key ?? [], partitionCount: 4))
                let value = String(decoding: record.value ?? [], as: UTF8.self)
                if let index = Int(value.split(separator: ":").last ?? "") {
                    #expect(index > lastIndexPerKey[key, default: -1], "\(key) out of order")
                    lastIndexPerKey[key] = index
                    #expect(record.timestamp == 1_700_000_000_000 + Int64(index))
                    #expect(record.headers == [RecordHeader(key: "n", value: Array("\(index)".utf8))])
                }
                #expect(record.offset == lastOffsetPerPartition[record.partition, default: -1] + 1)
                lastOffsetPerPartition[record.partition] = record.offset
            }
        }
    }

    @Test func idempotentRetriesAfterDroppedConnectionsLeaveNoDuplicatesAndNoGaps() async throws {
        try await withBrokerAndClient { _, client in
            try await client.admin.createTopic("ledger", partitions: 2)
            var configuration = ProducerConfiguration()
            configuration.linger = .milliseconds(1)
            configuration.batchBytes = 1024
            let producer = client.makeProducer(configuration: configuration)
            let total = 6000
            let failures = FailureCounter()
            let sending = Task {
                for i in 0..<total {
                    try await producer.enqueue(ProducerRecord(topic: "ledger", partition: i % 2, value: "\(i)")) { result in
                        if case .failure(let error) = result { failures.add(error) }
                    }
                    if i % 500 == 0 { await Task.yield() }
                }
            }
            // Cut the connection under the producer's feet while batches are in flight.
            var cuts = 0
            for threshold in [5, 20, 40, 70] {
                let deadline = ContinuousClock.now + .seconds(10)
                while producer.statistics.requestsSent < threshold && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(1))
                }
                try? await client.connection().close()
                cuts += 1
            }
            try await sending.value
            try await producer.flush()
            let statistics = producer.statistics
            try await producer.close()
            #expect(failures.count == 0, "\(failures.first)")
            #expect(statistics.producerIDRequests == 1)
            #expect(cuts == 4)
            #expect(statistics.retries > 0, "the connection cuts should have forced resends: \(statistics)")

            let records = try await consumeAll(client, topic: "ledger", partitions: 2, count: total)
            for partition in 0..<2 {
                let values = records.filter { $0.partition == partition }.map { Int(String(decoding: $0.value ?? [], as: UTF8.self))! }
                // Exactly the records sent to this partition, each once, in the order sent.
                let expected = Array(stride(from: partition, to: total, by: 2))
                #expect(values.count == expected.count)
                let firstDifference = zip(values, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                #expect(firstDifference == nil, "first difference at \(firstDifference ?? -1)")
                let offsets = records.filter { $0.partition == partition }.map(\.offset)
                #expect(offsets.first == 0 && offsets.last == Int64(total / 2 - 1) && Set(offsets).count == offsets.count)
            }
            let (earliest, latest) = (
                try await client.admin.listOffsets(topic: "ledger", partition: 0, at: .earliest),
                try await client.admin.listOffsets(topic: "ledger", partition: 0, at: .latest)
            )
            #expect(earliest == 0 && latest == Int64(total / 2))
        }
    }

    @Test func aRetriedBatchIsAnsweredWithTheOriginalOffsetsByTheBroker() async throws {
        try await withBrokerAndClient { _, client in
            try await client.admin.createTopic("t")
            let producer = client.makeProducer()
            _ = try await producer.send(ProducerRecord(topic: "t", value: "warm-up"))
            try await producer.close()
            // A second identity, used by hand: send the same idempotent batch twice.
            let connection = try await client.connection()
            var initRequest = Fjord_V1_InitProducerIdRequest()
            initRequest.producerID = -1
            let identity: Fjord_V1_InitProducerIdResponse = try await connection.unary(.initProducerID, initRequest)
            #expect(identity.producerID >= 0 && identity.producerEpoch == 0)
            var builder = RecordBatchBuilder()
            builder.producerID = identity.producerID
            builder.producerEpoch = identity.producerEpoch
            builder.baseSequence = 0
            builder.append(Record(value: Array("once".utf8), timestamp: 1))
            let batch = builder.build()
            var answers: [Fjord_V1_ProduceResponse] = []
            for attempt in 0..<2 {
                let stream = connection.openStream(.produce)
                var request = Fjord_V1_ProduceRequest()
                request.topic = "t"
                request.leaderEpoch = -1
                request.acks = .leader
                request.requestID = UInt64(attempt)
                request.batch = Data(batch.readableBytesView)
                try await stream.send(request, endOfStream: true)
                let frame = try #require(try await stream.next())
                answers.append(try Fjord_V1_ProduceResponse(buffer: frame.payload))
                _ = try await stream.next()
            }
            #expect(answers[0].baseOffset == 1 && !answers[0].duplicate)
            #expect(answers[1].baseOffset == 1 && answers[1].duplicate)
            #expect(try await client.admin.listOffsets(topic: "t", partition: 0, at: .latest) == 2)
            // An epoch bump fences the old epoch.
            var bump = Fjord_V1_InitProducerIdRequest()
            bump.producerID = identity.producerID
            bump.producerEpoch = identity.producerEpoch
            let bumped: Fjord_V1_InitProducerIdResponse = try await connection.unary(.initProducerID, bump)
            #expect(bumped.producerID == identity.producerID && bumped.producerEpoch == 1)
            // An id the broker never handed out cannot be claimed (and used to fence others).
            var claim = Fjord_V1_InitProducerIdRequest()
            claim.producerID = 1_000_000
            claim.producerEpoch = 3
            do {
                let _: Fjord_V1_InitProducerIdResponse = try await connection.unary(.initProducerID, claim)
                Issue.record("the broker bumped an id it never issued")
            } catch let error as FjordClientError {
                #expect(error.code == .unknownProducerID)
            }
        }
    }

    @Test func producerIDsAreNeverReusedAcrossRestarts() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-client-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var seen: Set<Int64> = []
        for _ in 0..<2 {
            try await withBrokerAndClient(directory: directory) { _, client in
                for _ in 0..<3 {
                    var request = Fjord_V1_InitProducerIdRequest()
                    request.producerID = -1
                    let response: Fjord_V1_InitProducerIdResponse = try await client.call(.initProducerID, request)
                    #expect(seen.insert(response.producerID).inserted)
                }
            }
        }
        #expect(seen.count == 6)
    }

    @Test func consumerSeeksByTimestampOffsetAndLatest() async throws {
        try await withBrokerAndClient { _, client in
            try await client.admin.createTopic("clicks")
            let producer = client.makeProducer()
            for i in 0..<10 {
                try await producer.send(ProducerRecord(topic: "clicks", value: "\(i)", timestamp: 1_000_000 + Int64(i) * 1000))
            }
            try await producer.close()
            let partition = TopicPartition("clicks", 0)
            let consumer = client.makeConsumer()
            try await consumer.assign([partition], from: .timestamp(1_005_000))
            var iterator = consumer.records.makeAsyncIterator()
            let fromTime = try #require(try await iterator.next())
            #expect(fromTime.offset == 5 && fromTime.value == Array("5".utf8))
            try await consumer.seek(partition, to: .offset(8))
            var next = try #require(try await iterator.next())
            while next.offset < 8 { next = try #require(try await iterator.next()) }  // already pushed before the seek
            #expect(next.offset == 8)
            try await consumer.seek(partition, to: .latest)
            let producer2 = client.makeProducer()
            try await producer2.send(ProducerRecord(topic: "clicks", value: "new", timestamp: 2_000_000))
            try await producer2.close()
            var live = try #require(try await iterator.next())
            while live.offset < 10 { live = try #require(try await iterator.next()) }
            #expect(live.offset == 10 && live.value == Array("new".utf8))
            #expect(consumer.position(partition) == 11)
            await consumer.close()
        }
    }

    @Test func anOffsetOutOfRangeIsResetPerPolicy() async throws {
        try await withBrokerAndClient { _, client in
            try await client.admin.createTopic("r")
            let producer = client.makeProducer()
            for i in 0..<3 { try await producer.send(ProducerRecord(topic: "r", value: "\(i)")) }
            try await producer.close()
            var configuration = ConsumerConfiguration()
            configuration.autoOffsetReset = .earliest
            let consumer = client.makeConsumer(configuration: configuration)
            try await consumer.assign([TopicPartition("r", 0)], from: .offset(1000))
            var iterator = consumer.records.makeAsyncIterator()
            #expect(try await iterator.next()?.offset == 0)
            await consumer.close()

            var strict = ConsumerConfiguration()
            strict.autoOffsetReset = .none
            let failing = client.makeConsumer(configuration: strict)
            try await failing.assign([TopicPartition("r", 0)], from: .offset(1000))
            var failingIterator = failing.records.makeAsyncIterator()
            await #expect(throws: FjordClientError.self) { _ = try await failingIterator.next() }
            await failing.close()
        }
    }

    @Test func aSlowConsumerHoldsOnlyItsCredit() async throws {
        try await withBrokerAndClient { broker, client in
            try await client.admin.createTopic("backlog")
            var producerConfiguration = ProducerConfiguration()
            producerConfiguration.batchBytes = 16 << 10
            let producer = client.makeProducer(configuration: producerConfiguration)
            let value = [UInt8](repeating: 7, count: 1000)
            for _ in 0..<4000 { try await producer.enqueue(ProducerRecord(topic: "backlog", value: value)) }
            try await producer.close()
            var configuration = ConsumerConfiguration()
            configuration.creditBytes = 64 << 10
            configuration.maxBytesPerResponse = 32 << 10
            let consumer = client.makeConsumer(configuration: configuration)
            try await consumer.assign([TopicPartition("backlog", 0)], from: .earliest)
            var iterator = consumer.batches.makeAsyncIterator()
            _ = try await iterator.next()
            try await Task.sleep(for: .milliseconds(300))
            // ~4 MB are available; without consuming, the broker pushed about the credit.
            let pushed = bytesOut(broker)
            #expect(pushed > 0)
            #expect(pushed <= (64 << 10) + (32 << 10) + (17 << 10), "pushed \(pushed) bytes against 64 KiB of credit")
            var count = 0
            while let batch = try await iterator.next() {
                count += Int(batch.nextOffset - batch.firstOffset)
                if batch.nextOffset == 4000 { break }
            }
            #expect(count > 0)
            await consumer.close()
        }
    }
}

func bytesOut(_ broker: Broker) -> Int {
    let line = broker.metrics.render().split(separator: "\n").first { $0.hasPrefix("fjord_bytes_out_total ") }
    return line.flatMap { Int(Double($0.split(separator: " ")[1]) ?? -1) } ?? 0
}

final class FailureCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    private(set) var first: [String] = []
    func add(_ error: any Error) {
        lock.lock()
        value += 1
        if first.count < 3 { first.append("\(error)") }
        lock.unlock()
    }
    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}
