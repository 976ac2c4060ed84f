import FjordBroker
import FjordClient
import FjordProto
import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Operator-facing defaults the hardening review found wanting: world-readable data files, a
/// silently unauthenticated plaintext listener, and bind errors that named no listener.
@Suite struct SecurityDefaultsTests {
    @Test func dataDirectoryLogsAndMetadataAreOwnerOnly() async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            _ = try await createTopic(connection, "private", partitions: 1)
            _ = try await produce(connection, topic: "private", partition: 0, batches: [makeBatch(["secret"])])
            try await connection.close()

            func mode(_ path: String) throws -> Int {
                try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
            }
            #expect(try mode(broker.directory) == 0o700)
            #expect(try mode(broker.directory + "/logs") == 0o700)
            let partition = broker.directory + "/logs/private-0"
            #expect(try mode(partition) == 0o700)
            let files = try FileManager.default.contentsOfDirectory(atPath: partition)
            #expect(files.contains { $0.hasSuffix(".log") })
            for file in files {
                #expect(try mode(partition + "/" + file) == 0o600, "\(file)")
            }
            for file in try FileManager.default.contentsOfDirectory(atPath: broker.directory)
            where !["logs", "certs"].contains(file) {
                #expect(try mode(broker.directory + "/" + file) & 0o077 == 0, "\(file) is readable by others")
            }
        }
    }

    @Test func plaintextListenerWithRequiredClientAuthIsFlaggedOnHealth() async throws {
        try await withBroker({ configuration in
            configuration.plaintextListen = .init(host: "127.0.0.1", port: 0)
            configuration.operationsListen = .init(host: "127.0.0.1", port: 0)
            configuration.requireClientCertificate = true
        }) { broker in
            let warning = try #require(broker.broker.configuration.securityWarning)
            #expect(warning.contains("plaintext.listen"))
            let port = try #require(broker.broker.operationsPort)
            let (data, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/health")!)
            let body = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect((body["warning"] as? String) == warning)
        }
        // Either alone is fine.
        var tlsOnly = BrokerConfiguration()
        tlsOnly.requireClientCertificate = true
        #expect(tlsOnly.securityWarning == nil)
        var plaintextOnly = BrokerConfiguration()
        plaintextOnly.plaintextListen = .init(host: "127.0.0.1", port: 0)
        #expect(plaintextOnly.securityWarning == nil)
    }

    @Test func anOperationsPortInUseNamesTheListenerAndAddress() async throws {
        try await withBroker({ configuration in
            configuration.operationsListen = .init(host: "127.0.0.1", port: 0)
        }) { first in
            let taken = try #require(first.broker.operationsPort)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-broker-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let second = Broker(
                configuration: makeConfiguration(directory: directory) { $0.operationsListen = .init(host: "127.0.0.1", port: taken) })
            do {
                try await second.start()
                Issue.record("a second broker started on a taken operations port")
            } catch let error as BrokerStartError {
                #expect(error.message.contains("cannot listen for operations (/metrics, /health) on 127.0.0.1:\(taken)"))
                #expect(error.message.contains("Address already in use"))
                #expect(error.message.contains("operations.listen"))
                #expect(!error.message.contains("bind(descriptor"))
            }
            await second.shutdown()
        }
    }
}
