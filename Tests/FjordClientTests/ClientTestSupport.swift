import FjordBroker
import FjordClient
import FjordTLS
import Foundation
import Logging
import NIOCore

/// A broker on an ephemeral loopback port with its data in a fresh temporary directory, and a
/// client configured to reach it over TLS.
func withBrokerAndClient(
    directory: String? = nil, _ body: (Broker, FjordClient) async throws -> Void
) async throws {
    let owned = directory == nil
    let directory =
        directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("fjord-client-\(UUID().uuidString)").path
    defer { if owned { try? FileManager.default.removeItem(atPath: directory) } }
    var configuration = BrokerConfiguration()
    configuration.dataDirectory = directory
    configuration.listen = .init(host: "127.0.0.1", port: 0)
    configuration.operationsListen = nil
    configuration.storageThreads = 2
    configuration.eventLoopThreads = 1
    let broker = Broker(configuration: configuration, logger: Logger(label: "test.broker"))
    try await broker.start()
    var clientConfiguration = FjordClientConfiguration(
        brokers: [BrokerAddress(host: "127.0.0.1", port: broker.tlsAddress!.port!)],
        tls: ClientTLSConfiguration(trustRootsPath: broker.developmentCertificates!.caCertificatePath))
    clientConfiguration.reconnect.initialBackoff = .milliseconds(5)
    clientConfiguration.reconnect.maxBackoff = .milliseconds(100)
    clientConfiguration.requestTimeout = .seconds(20)
    let client = FjordClient(configuration: clientConfiguration)
    do {
        try await body(broker, client)
    } catch {
        await client.close()
        await broker.shutdown()
        throw error
    }
    await client.close()
    await broker.shutdown()
}

/// Reads `count` records from `partitions` starting at offset 0, or fails after `timeout`.
func consumeAll(
    _ client: FjordClient, topic: String, partitions: Int, count: Int, timeout: Duration = .seconds(20)
) async throws -> [ConsumerRecord] {
    let consumer = client.makeConsumer()
    try await consumer.assign((0..<partitions).map { TopicPartition(topic, $0) }, from: .earliest)
    let watchdog = Task {
        try await Task.sleep(for: timeout)
        await consumer.close()
    }
    var records: [ConsumerRecord] = []
    for try await record in consumer.records {
        records.append(record)
        if records.count == count { break }
    }
    watchdog.cancel()
    await consumer.close()
    return records
}
