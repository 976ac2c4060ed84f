public import ServiceLifecycle

/// Runs a ``Broker`` as a swift-service-lifecycle `Service`: starts it, then on graceful
/// shutdown (SIGTERM or SIGINT when run by a `ServiceGroup`) stops it cleanly.
///
/// ```swift
/// let group = ServiceGroup(
///     services: [BrokerService(broker: broker)],
///     gracefulShutdownSignals: [.sigterm, .sigint],
///     logger: logger)
/// try await group.run()
/// ```
public struct BrokerService: Service {
    /// The broker run by this service.
    public let broker: Broker
    /// Called once the broker is listening (for example to print its addresses).
    public var onStarted: @Sendable (Broker) -> Void

    /// Creates the service.
    public init(broker: Broker, onStarted: @escaping @Sendable (Broker) -> Void = { _ in }) {
        self.broker = broker
        self.onStarted = onStarted
    }

    public func run() async throws {
        do {
            try await broker.start()
        } catch {
            await broker.shutdown()
            throw error
        }
        onStarted(broker)
        // Wait for graceful shutdown (or cancellation), then stop.
        try? await gracefulShutdown()
        await broker.shutdown()
    }
}
