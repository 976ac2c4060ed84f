import ArgumentParser
import Dispatch
import FjordClient
import FjordProto
import FjordProtocol
import FjordRecords
import Foundation
import Histogram
import NIOCore
import Synchronization

/// Options every client benchmark shares.
struct BenchWorkload: ParsableArguments {
    @Option(help: "Topic to use; by default a fresh topic bench-<random> is created (and deleted unless --keep).")
    var topic: String?
    @Option(help: "Partitions of the fresh topic.") var partitions = 1
    @Option(help: "Number of records.") var records = 1_000_000
    @Option(help: "Bytes of each record's value.") var recordSize = 100
    @Flag(help: "Keep the fresh topic afterwards.") var keep = false
    @Flag(help: "Print one JSON object instead of text.") var json = false
}

/// Percentiles of a latency histogram in microseconds.
struct LatencySummary: Codable {
    var samples: UInt64
    var p50_us: Double
    var p99_us: Double
    var p999_us: Double
    var max_us: Double

    init(_ histogram: Histogram<UInt64>) {
        samples = histogram.totalCount
        p50_us = Double(histogram.valueAtPercentile(50)) / 1000
        p99_us = Double(histogram.valueAtPercentile(99)) / 1000
        p999_us = Double(histogram.valueAtPercentile(99.9)) / 1000
        max_us = Double(histogram.max) / 1000
    }

    var text: String {
        String(format: "p50 %.1f µs, p99 %.1f µs, p99.9 %.1f µs, max %.1f µs (%llu samples)", p50_us, p99_us, p999_us, max_us, samples)
    }
}

/// A latency histogram in nanoseconds (1 ns to 100 s, 3 significant digits) shared by callbacks.
final class SharedHistogram: Sendable {
    private let histogram = Mutex(Histogram<UInt64>(highestTrackableValue: 100_000_000_000, numberOfSignificantValueDigits: .three))
    func record(_ nanoseconds: UInt64) { _ = histogram.withLock { $0.record(max(1, nanoseconds)) } }
    var snapshot: Histogram<UInt64> { histogram.withLock { $0 } }
}

/// A counter callbacks on any thread may bump.
final class AtomicCounter: Sendable {
    private let count = Atomic<Int>(0)
    func add(_ n: Int = 1) { count.add(n, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// Shows a long benchmark's progress on standard error, when that is a terminal and the output
/// is not JSON: records so far and the current rate, redrawn twice a second.
struct ProgressLine {
    let task: Task<Void, Never>?

    init(label: String, total: Int, counter: AtomicCounter, enabled: Bool) {
        guard enabled, isatty(STDERR_FILENO) != 0 else {
            task = nil
            return
        }
        task = Task {
            var last = 0
            var lastTime = nowNanoseconds()
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(500))
                if Task.isCancelled { break }
                let now = nowNanoseconds()
                let done = counter.value
                let rate = Double(done - last) / (Double(now - lastTime) / 1e9)
                let percent = total > 0 ? 100 * Double(done) / Double(total) : 0
                FileHandle.standardError.write(
                    Data(String(format: "\r%@: %d / %d records (%.0f%%), %.0f records/s   ", label, done, total, percent, rate).utf8))
                last = done
                lastTime = now
            }
        }
    }

    func finish() {
        guard let task else { return }
        task.cancel()
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}

func nowNanoseconds() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// Creates the benchmark topic (unless one was named) and removes it afterwards.
func withBenchTopic(
    _ client: FjordClient, _ workload: BenchWorkload, _ body: (String) async throws -> Void
) async throws {
    if let topic = workload.topic {
        _ = try await client.refreshMetadata(topic: topic)
        try await body(topic)
        return
    }
    let topic = "bench-\(UInt32.random(in: 0...UInt32.max))"
    try await client.admin.createTopic(topic, partitions: workload.partitions)
    do {
        try await body(topic)
    } catch {
        if !workload.keep { try? await client.admin.deleteTopic(topic) }
        throw error
    }
    if !workload.keep { try await client.admin.deleteTopic(topic) }
}

/// Sends `count` records of `size` bytes through one producer per connection; returns seconds.
func produceRecords(
    configuration: FjordClientConfiguration, topic: String, count: Int, size: Int, producers: Int,
    producerConfiguration: ProducerConfiguration, latency: SharedHistogram?, sampleEvery: Int = 256,
    progress: AtomicCounter? = nil
) async throws -> (seconds: Double, failures: Int) {
    let failures = AtomicCounter()
    let started = nowNanoseconds()
    try await withThrowingTaskGroup(of: Void.self) { group in
        for index in 0..<producers {
            let share = count / producers + (index < count % producers ? 1 : 0)
            group.addTask {
                let client = FjordClient(configuration: configuration)
                let producer = client.makeProducer(configuration: producerConfiguration)
                // One random payload for every record, as Kafka's producer perf tool does: the
                // benchmark measures Fjord, not the allocation of test data.
                let value = (0..<size).map { _ in UInt8.random(in: 0x20...0x7e) }
                var chunk: [ProducerRecord] = []
                chunk.reserveCapacity(sampleEvery)
                var i = 0
                while i < share {
                    chunk.removeAll(keepingCapacity: true)
                    while chunk.count < sampleEvery && i < share {
                        chunk.append(ProducerRecord(topic: topic, value: value))
                        i += 1
                    }
                    // Latency is sampled on the first record of each chunk; failures are counted for all.
                    let sent = nowNanoseconds()
                    try await producer.enqueue(contentsOf: chunk) { index, result in
                        switch result {
                        case .success: if index == 0 { latency?.record(nowNanoseconds() - sent) }
                        case .failure: failures.add()
                        }
                    }
                    progress?.add(chunk.count)
                }
                try await producer.close()
                await client.close()
            }
        }
        try await group.waitForAll()
    }
    return (Double(nowNanoseconds() - started) / 1e9, failures.value)
}

/// `fjord bench produce`: producer throughput and acknowledgement latency.
struct BenchProduceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Measure producer throughput and ack latency against a running broker.",
        discussion: """
            Sends --records records of --record-size bytes with --producers producers (one
            connection each), then checks the partitions' end offsets add up to what was sent.
            MB/s counts payload bytes (MB = 10^6 B). Latency is from handing a record to the
            producer to its acknowledgement, sampled every 256th record, from an HdrHistogram.

            Examples:
              fjord bench produce --records 5000000 --record-size 100 --acks leader
              fjord bench produce --records 2000000 --record-size 1024 --batch-bytes 1048576 --json
              fjord bench produce --acks durable --partitions 4 --producers 2
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var workload: BenchWorkload
    @Option(help: "Producers, one connection each.") var producers = 1
    @Option(help: "none, leader or durable.") var acks: AcksOption = .leader
    @Option(help: "Bytes per batch.") var batchBytes = 256 << 10
    @Option(help: "Linger in milliseconds.") var lingerMs = 2
    @Option(help: "Batches in flight per partition.") var inFlight = 5
    @Flag(help: "Send without idempotence.") var noIdempotence = false

    func run() async throws {
        let clientConfiguration = try connection.clientConfiguration()
        var producerConfiguration = ProducerConfiguration()
        producerConfiguration.acks = acks.value
        producerConfiguration.batchBytes = batchBytes
        producerConfiguration.linger = .milliseconds(lingerMs)
        producerConfiguration.maxInFlightPerPartition = inFlight
        producerConfiguration.idempotent = !noIdempotence
        try await withClient(connection) { admin in
            try await withBenchTopic(admin, workload) { topic in
                let partitions = try await admin.refreshMetadata(topic: topic).partitionCount
                let before = try await endOffsets(admin, topic: topic, partitions: partitions)
                let latency = SharedHistogram()
                let sent = AtomicCounter()
                let progress = ProgressLine(label: "produce", total: workload.records, counter: sent, enabled: !workload.json)
                let run = try await produceRecords(
                    configuration: clientConfiguration, topic: topic, count: workload.records, size: workload.recordSize,
                    producers: producers, producerConfiguration: producerConfiguration, latency: latency, progress: sent)
                progress.finish()
                let after = try await endOffsets(admin, topic: topic, partitions: partitions)
                let appended = zip(after, before).reduce(0) { $0 + Int($1.0 - $1.1) }
                let verified = appended == workload.records && run.failures == 0
                let summary = LatencySummary(latency.snapshot)
                let report = ThroughputReport(
                    kind: "produce", records: workload.records, recordSize: workload.recordSize, seconds: run.seconds,
                    latency: summary, verified: verified,
                    details: "acks=\(acks.rawValue) producers=\(producers) partitions=\(partitions) batch=\(batchBytes)B linger=\(lingerMs)ms; appended \(appended) records, \(run.failures) failed")
                report.print(json: workload.json)
                if !verified { throw ExitCode(1) }
            }
        }
    }
}

/// `fjord bench consume`: consumer throughput from offset 0.
struct BenchConsumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Measure consumer throughput from the start of a topic against a running broker.",
        discussion: """
            Fills a fresh topic with --records records first (not timed), or reads an existing
            --topic up to its end offsets at start. Every batch's CRC32C is checked and every record
            walked (key, value and headers located, value size checked for the fresh topic).

            Examples:
              fjord bench consume --records 10000000 --record-size 100
              fjord bench consume --records 2000000 --record-size 1024 --json
              fjord bench consume --topic orders
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var workload: BenchWorkload
    @Option(help: "Subscription credit per partition in bytes.") var creditBytes = 8 << 20
    @Option(help: "Most bytes per pushed message.") var maxBytes = 1 << 20

    func run() async throws {
        let clientConfiguration = try connection.clientConfiguration()
        try await withClient(connection) { client in
            try await withBenchTopic(client, workload) { topic in
                let partitions = try await client.refreshMetadata(topic: topic).partitionCount
                if workload.topic == nil {
                    var producerConfiguration = ProducerConfiguration()
                    producerConfiguration.batchBytes = 256 << 10
                    _ = try await produceRecords(
                        configuration: clientConfiguration, topic: topic, count: workload.records, size: workload.recordSize,
                        producers: 1, producerConfiguration: producerConfiguration, latency: nil)
                }
                let ends = try await endOffsets(client, topic: topic, partitions: partitions)
                let starts = try await client.admin.listOffsets((0..<partitions).map { (topic, $0, .earliest) }).map { $0 ?? 0 }
                let expected = zip(ends, starts).reduce(0) { $0 + Int($1.0 - $1.1) }
                var consumerConfiguration = ConsumerConfiguration()
                consumerConfiguration.creditBytes = creditBytes
                consumerConfiguration.maxBytesPerResponse = maxBytes
                let consumer = client.makeConsumer(configuration: consumerConfiguration)
                let started = nowNanoseconds()
                try await consumer.assign((0..<partitions).map { TopicPartition(topic, $0) }, from: .earliest)
                var count = 0
                var payloadBytes = 0
                var badValues = 0
                var remaining = Set((0..<partitions).filter { ends[$0] > starts[$0] })
                let checkSize = workload.topic == nil ? workload.recordSize : nil
                let consumed = AtomicCounter()
                let progress = ProgressLine(label: "consume", total: expected, counter: consumed, enabled: !workload.json)
                defer { progress.finish() }
                if !remaining.isEmpty {
                    for try await batch in consumer.batches {
                        let first = batch.firstOffset
                        let base = batch.header.baseOffset
                        let end = ends[batch.topicPartition.partition]
                        try batch.bytes.withUnsafeReadableBytes { raw in
                            try RecordBatchView(raw).forEachRecord { fields in
                                let offset = base + Int64(fields.index)
                                guard offset >= first, offset < end else { return }
                                count += 1
                                let size = fields.value?.count ?? 0
                                payloadBytes += size
                                if let checkSize, size != checkSize { badValues += 1 }
                            }
                        }
                        consumed.add(Int(batch.header.recordCount))
                        if batch.nextOffset >= end {
                            remaining.remove(batch.topicPartition.partition)
                            if remaining.isEmpty { break }
                        }
                    }
                }
                let seconds = Double(nowNanoseconds() - started) / 1e9
                await consumer.close()
                let verified = count == expected && badValues == 0
                let report = ThroughputReport(
                    kind: "consume", records: count, recordSize: workload.recordSize, seconds: seconds, latency: nil,
                    verified: verified, payloadBytes: payloadBytes,
                    details: "partitions=\(partitions) credit=\(creditBytes)B; expected \(expected) records, \(badValues) with a wrong size")
                report.print(json: workload.json)
                if !verified { throw ExitCode(1) }
            }
        }
    }
}

/// `fjord bench roundtrip`: one record at a time, acknowledgement and end-to-end latency.
struct BenchRoundtripCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "roundtrip",
        abstract: "Measure single-record latency: ack latency and produce-to-consume latency.",
        discussion: """
            Sends --records records one at a time (the next only after the previous one's
            acknowledgement) while a consumer subscribed to the topic receives them. Reports the
            ack latency and the end-to-end latency (from send to the consumer's hands), p50, p99,
            p99.9 and max from HdrHistogram.

            Examples:
              fjord bench roundtrip --records 20000 --record-size 100
              fjord bench roundtrip --acks durable --json
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var workload: BenchWorkload
    @Option(help: "none, leader or durable.") var acks: AcksOption = .leader
    @Option(help: "Records sent before measuring.") var warmup = 1000
    @Flag(help: "Drive one produce stream by hand instead of the producer (splits client from broker time).")
    var raw = false

    func run() async throws {
        // Two connections: the consumer's pushes do not queue behind the producer's requests.
        try await withClient(connection) { client in
            try await withClient(connection) { consumerClient in
                try await roundtrip(client: client, consumerClient: consumerClient)
            }
        }
    }

    private func roundtrip(client: FjordClient, consumerClient: FjordClient) async throws {
        try await withBenchTopic(client, workload) { topic in
            var producerConfiguration = ProducerConfiguration()
            producerConfiguration.acks = acks.value
            producerConfiguration.linger = .zero
            let producer = client.makeProducer(configuration: producerConfiguration)
            let consumer = consumerClient.makeConsumer()
            try await consumer.assign(topic: topic, from: .latest)
            let endToEnd = SharedHistogram()
            let total = warmup + workload.records
            let receiver = Task {
                var received = 0
                for try await batch in consumer.batches {
                    let now = nowNanoseconds()
                    try batch.bytes.withUnsafeReadableBytes { raw in
                        try RecordBatchView(raw).forEachRecord { fields in
                            received += 1
                            guard received > warmup, let value = fields.value, value.count >= 8 else { return }
                            let sent = raw.loadUnaligned(fromByteOffset: value.lowerBound, as: UInt64.self)
                            endToEnd.record(now - UInt64(littleEndian: sent))
                        }
                    }
                    if received >= total { break }
                }
                return received
            }
            var ack = Histogram<UInt64>(highestTrackableValue: 100_000_000_000, numberOfSignificantValueDigits: .three)
            var value = [UInt8](repeating: 0x61, count: max(8, workload.recordSize))
            let started = nowNanoseconds()
            var measuredStart = started
            // --raw: one produce stream driven by hand, without the producer (to split client
            // time from broker and network time).
            let rawStream = raw ? try await client.connection().openStream(.produce) : nil
            for i in 0..<total {
                if i == warmup { measuredStart = nowNanoseconds() }
                let sent = nowNanoseconds()
                withUnsafeBytes(of: sent.littleEndian) { value.replaceSubrange(0..<8, with: $0) }
                if let rawStream {
                    var builder = RecordBatchBuilder(capacity: 256)
                    builder.append(key: nil, value: value, timestamp: Int64(sent / 1_000_000))
                    var request = Fjord_V1_ProduceRequest()
                    request.topic = topic
                    request.leaderEpoch = -1
                    request.acks = .leader
                    request.requestID = UInt64(i)
                    request.batch = Data(builder.finish().readableBytesView)
                    try await rawStream.send(request)
                    _ = try await rawStream.next()
                } else {
                    try await producer.send(ProducerRecord(topic: topic, value: value))
                }
                if i >= warmup { _ = ack.record(max(1, nowNanoseconds() - sent)) }
            }
            let seconds = Double(nowNanoseconds() - measuredStart) / 1e9
            try await producer.close()
            let timeout = Task {
                try await Task.sleep(for: .seconds(10))
                await consumer.close()
            }
            let received = try await receiver.value
            timeout.cancel()
            await consumer.close()
            let verified = received == total
            let report = ThroughputReport(
                kind: "roundtrip", records: workload.records, recordSize: workload.recordSize, seconds: seconds,
                latency: LatencySummary(ack), verified: verified, endToEnd: LatencySummary(endToEnd.snapshot),
                details: "acks=\(acks.rawValue), one record in flight; consumer received \(received) of \(total)")
            report.print(json: workload.json)
            if !verified { throw ExitCode(1) }
        }
    }
}

func endOffsets(_ client: FjordClient, topic: String, partitions: Int) async throws -> [Int64] {
    try await client.admin.listOffsets((0..<partitions).map { (topic, $0, .latest) }).map { $0 ?? 0 }
}

/// One benchmark's result, as text or one JSON object.
struct ThroughputReport: Codable {
    var kind: String
    var records: Int
    var record_size: Int
    var seconds: Double
    var records_per_sec: Double
    var mb_per_sec: Double
    var p50_us: Double?
    var p99_us: Double?
    var p999_us: Double?
    var max_us: Double?
    var end_to_end: LatencySummary?
    var verified: Bool
    var details: String

    init(
        kind: String, records: Int, recordSize: Int, seconds: Double, latency: LatencySummary?, verified: Bool,
        payloadBytes: Int? = nil, endToEnd: LatencySummary? = nil, details: String
    ) {
        self.kind = kind
        self.records = records
        self.record_size = recordSize
        self.seconds = seconds
        self.records_per_sec = Double(records) / seconds
        self.mb_per_sec = Double(payloadBytes ?? records * recordSize) / seconds / 1e6
        self.p50_us = latency?.p50_us
        self.p99_us = latency?.p99_us
        self.p999_us = latency?.p999_us
        self.max_us = latency?.max_us
        self.end_to_end = endToEnd
        self.verified = verified
        self.details = details
    }

    func print(json: Bool) {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let data = (try? encoder.encode(self)) ?? Data("{}".utf8)
            Swift.print(String(decoding: data, as: UTF8.self))
            return
        }
        Swift.print(String(format: "%@: %d records of %d B in %.3f s: %.0f records/s, %.1f MB/s", kind, records, record_size, seconds, records_per_sec, mb_per_sec))
        if let p50_us, let p99_us, let p999_us, let max_us {
            Swift.print(String(format: "  latency: p50 %.1f µs, p99 %.1f µs, p99.9 %.1f µs, max %.1f µs", p50_us, p99_us, p999_us, max_us))
        }
        if let end_to_end { Swift.print("  end to end: " + end_to_end.text) }
        Swift.print("  \(details); verified: \(verified ? "yes" : "NO")")
    }
}
