import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import FjordTLS
import FjordWire
import Foundation
import NIOCore
import NIOPosix
import Testing

/// `max.connections` and `handshake.timeout.ms`: a client past the limit is told so, a connection
/// that never says hello is closed, and both leave the served connections alone.
@Suite("Connection limits", .timeLimit(.minutes(2)))
struct ConnectionLimitTests {
    @Test func aConnectionPastTheLimitIsToldTooManyConnections() async throws {
        try await withBroker({ $0.maxConnections = 2 }) { broker in
            let first = try await broker.connect()
            let second = try await broker.connect()
            do {
                let third = try await broker.connect()
                try? await third.close()
                Issue.record("a third connection was served with max.connections = 2")
            } catch let error as FjordClientError {
                #expect(error.code == .tooManyConnections)
                #expect(error.isRetriable)
                #expect(error.message.contains("max.connections"))
            }
            let rejected = broker.broker.metrics.render().split(separator: "\n")
                .first { $0.hasPrefix("fjord_connections_rejected_total ") }
            #expect(rejected.flatMap { Double($0.split(separator: " ")[1]) } ?? 0 >= 1)
            // The two served connections are untouched; once one closes, a newcomer is served.
            let _: Fjord_V1_ListTopicsResponse = try await first.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            try await second.close()
            let newcomer = try await broker.connectOnceServed()
            let _: Fjord_V1_ListTopicsResponse = try await newcomer.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            try await newcomer.close()
            try await first.close()
        }
    }

    @Test func aConnectionWithoutHandshakeTimesOut() async throws {
        try await withBroker({ $0.handshakeTimeoutMilliseconds = 1500 }) { broker in
            let bystander = try await broker.connect()
            // TLS is established, but no Handshake frame follows.
            let (channel, frames) = try await BrokerBadInputTests().rawConnection(broker)
            let started = ContinuousClock.now
            let frame = try #require(await frames.next())
            #expect(frame.header.streamID == 0 && frame.header.flags.contains(.error))
            let error = try Fjord_V1_Error(buffer: frame.payload)
            #expect(error.code == .requestTimedOut)
            #expect(error.message.contains("handshake.timeout.ms"))
            try await channel.closeFuture.get()
            #expect(ContinuousClock.now - started < .seconds(5))

            // A TCP connection that never starts TLS is closed too, without a frame.
            let silent = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: broker.port).get()
            try await silent.closeFuture.get()

            // The served connection (which did its handshake) stays past the deadline.
            try await Task.sleep(for: .milliseconds(1600))
            let _: Fjord_V1_ListTopicsResponse = try await bystander.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            try await bystander.close()
        }
    }
}
