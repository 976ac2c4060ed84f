import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import FjordWire
import Foundation
import NIOCore
import Testing

/// The plaintext listener serves stored batches with `sendfile` (file regions); the TLS listener
/// of the same broker serves the same bytes from the segment map.
@Suite("Plaintext listener", .timeLimit(.minutes(2)))
struct PlaintextListenerTests {
    @Test func fetchAndSubscribeOverPlaintextServeTheSameBytesAsTLS() async throws {
        try await withBroker({ $0.plaintextListen = .init(host: "127.0.0.1", port: 0) }) { broker in
            let port = try #require(broker.broker.plaintextAddress?.port)
            let plain = try await FjordConnection.connect(host: "127.0.0.1", port: port, tls: nil, clientID: "plain")
            let secure = try await broker.connect()
            try await createTopic(plain, "mixed", partitions: 2)
            for partition in UInt32(0)..<2 {
                // Enough for several 16 KiB subscription reads and a 64 KiB fetch per partition.
                let batches = (0..<40).map { batch in
                    makeBatch((0..<20).map { "p\(partition)-b\(batch)-r\($0)-" + String(repeating: "z", count: 100) })
                }
                let acks = try await produce(plain, topic: "mixed", partition: partition, batches: batches)
                #expect(acks.allSatisfy { !$0.hasError })
            }

            // A fetch of both partitions at once: per partition, plaintext and TLS agree byte for byte.
            var request = Fjord_V1_FetchRequest()
            request.partitions = (UInt32(0)..<2).map { partition in
                var wanted = Fjord_V1_FetchPartition()
                wanted.topic = "mixed"
                wanted.partition = partition
                wanted.offset = 33
                wanted.leaderEpoch = -1
                wanted.maxBytes = 64 * 1024
                return wanted
            }
            let overPlaintext: Fjord_V1_FetchResponse = try await plain.unary(.fetch, request)
            let overTLS: Fjord_V1_FetchResponse = try await secure.unary(.fetch, request)
            #expect(overPlaintext == overTLS)
            for (partition, result) in overPlaintext.partitions.enumerated() {
                #expect(!result.hasError)
                let fetched = values(of: result.records, from: 33)
                #expect(fetched.first?.hasPrefix("p\(partition)-b1-r13-") == true)
                #expect(fetched.count > 100)
            }

            // A subscription from the start reads all 800 records of partition 1 in order.
            let stream = plain.openStream(.subscribe)
            var subscribe = Fjord_V1_SubscribeRequest()
            subscribe.topic = "mixed"
            subscribe.partition = 1
            subscribe.leaderEpoch = -1
            subscribe.creditBytes = 1 << 30
            subscribe.maxBytes = 16 * 1024
            try await stream.send(subscribe)
            var received: [String] = []
            while received.count < 800 {
                let frame = try #require(try await stream.next())
                received += values(of: try Fjord_V1_SubscribeResponse(buffer: frame.payload).records)
            }
            #expect(received.count == 800)
            #expect(received == (0..<40).flatMap { batch in (0..<20).map { "p1-b\(batch)-r\($0)-" + String(repeating: "z", count: 100) } })
            try await stream.cancel()
            try await plain.close()
            try await secure.close()
        }
    }
}
