import FjordBroker
import FjordClient
import FjordProto
import FjordRecords
import Foundation
import Testing

/// An in-process broker restarted on damaged files: the background scrubber finds damage nobody
/// reads, the partition answers fetches and produces with non-retriable `CORRUPT_LOG` (a lost tail
/// with `LOG_TAIL_LOST`), and `/metrics` counts it.
@Suite struct DamagedPartitionTests {
    @Test func scrubberFindsDamageAndThePartitionGoesOfflineWithANonRetriableError() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-damage-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await withBroker(directory: directory) { broker in
            let connection = try await broker.connect()
            _ = try await createTopic(connection, "d", partitions: 2, configs: ["segment.bytes": "2048"])
            for partition: UInt32 in 0..<2 {
                let batches = (0..<40).map { i in makeBatch(["p\(partition)-\(i)-" + String(repeating: "x", count: 100)]) }
                let responses = try await produce(connection, topic: "d", partition: partition, batches: batches, acks: .durable)
                #expect(responses.allSatisfy { !$0.hasError })
            }
            try await connection.close()
        }

        // Partition 0: a flipped bit in its oldest segment; partition 1: its last batch cut away.
        let damaged = URL(fileURLWithPath: directory + "/logs/d-0/00000000000000000000.log")
        var bytes = try Data(contentsOf: damaged)
        bytes[BatchFraming.prefixSize + RecordBatchLayout.headerSize + 5] ^= 0x20
        try bytes.write(to: damaged)
        let partition1 = directory + "/logs/d-1"
        let last = try #require(try FileManager.default.contentsOfDirectory(atPath: partition1).filter { $0.hasSuffix(".log") }.max())
        let lastURL = URL(fileURLWithPath: partition1 + "/" + last)
        let lastBytes = try Data(contentsOf: lastURL)
        var frames: [Int] = []
        lastBytes.withUnsafeBytes { raw in
            var iterator = FramedBatchIterator(raw)
            while let framed = iterator.next() { frames.append(framed.position) }
        }
        try lastBytes.prefix(try #require(frames.last)).write(to: lastURL)

        try await withBroker(directory: directory, { $0.scrubIntervalMilliseconds = 20 }) { broker in
            // Nobody reads partition 0: the scrubber finds the damage and counts it.
            let deadline = ContinuousClock.now + .seconds(10)
            while !broker.broker.metrics.render().contains(#"fjord_storage_damage_total{kind="corrupt_segment"} 1"#),
                ContinuousClock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(20))
            }
            let metrics = broker.broker.metrics.render()
            #expect(metrics.contains(#"fjord_storage_damage_total{kind="corrupt_segment"} 1"#), "\(metrics)")
            #expect(metrics.contains(#"fjord_storage_damage_total{kind="lost_tail"} 1"#), "\(metrics)")

            let connection = try await broker.connect()
            let fetched = try await fetch(connection, topic: "d", partition: 0, offset: 0)
            #expect(fetched.error.code == .corruptLog)
            #expect(!fetched.error.retriable)
            #expect(fetched.error.message.contains(damaged.path))
            #expect(fetched.records.batches.isEmpty)
            let produced = try await produce(connection, topic: "d", partition: 0, batches: [makeBatch(["more"])])
            #expect(produced.first?.error.code == .corruptLog)

            let shortened = try await fetch(connection, topic: "d", partition: 1, offset: 0)
            #expect(shortened.error.code == .logTailLost)
            #expect(!shortened.error.retriable)
            #expect(shortened.error.message.contains("39 to 39"))
            try await connection.close()
        }
    }
}
