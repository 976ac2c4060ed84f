import FjordProto
import FjordTLS
import NIOCore
import NIOPosix
import NIOSSL

/// Keeps one live connection to some broker of the list, reconnecting on demand with backoff and
/// jitter. Concurrent callers share one connection attempt.
actor ConnectionProvider {
    let configuration: FjordClientConfiguration
    let group: any EventLoopGroup
    private var current: FjordConnection?
    private var connecting: Task<FjordConnection, any Error>?
    /// The next broker to try, so a failing broker is not retried first every time.
    private var nextBroker = 0
    private var closed = false

    init(configuration: FjordClientConfiguration, group: any EventLoopGroup) {
        self.configuration = configuration
        self.group = group
    }

    /// A live connection: the current one, or a new one after backoff.
    func connection() async throws -> FjordConnection {
        if closed { throw FjordClientError(code: .unknown, message: "the client is closed", isRetriable: false) }
        if let current, current.isActive { return current }
        current = nil
        if let connecting { return try await connecting.value }
        let task = Task { [configuration, group, nextBroker] () async throws -> FjordConnection in
            try await Self.connect(configuration: configuration, group: group, startingAt: nextBroker)
        }
        connecting = task
        defer { connecting = nil }
        do {
            let connection = try await task.value
            current = connection
            return connection
        } catch {
            nextBroker += 1
            throw error
        }
    }

    /// Drops `connection` if it is the current one (after an error on it); the next call reconnects.
    func invalidate(_ connection: FjordConnection) async {
        guard current === connection else { return }
        current = nil
        try? await connection.close()
    }

    /// Closes the connection; later calls fail.
    func close() async {
        closed = true
        connecting?.cancel()
        if let current { try? await current.close() }
        current = nil
    }

    private static func connect(
        configuration: FjordClientConfiguration, group: any EventLoopGroup, startingAt first: Int
    ) async throws -> FjordConnection {
        let brokers = configuration.brokers
        guard !brokers.isEmpty else {
            throw FjordClientError(code: .invalidRequest, message: "no broker addresses configured", isRetriable: false)
        }
        let deadline = ContinuousClock.now + configuration.reconnect.giveUpAfter
        var attempt = 0
        var lastError: any Error = FjordClientError(code: .unknown, message: "no attempt made")
        while true {
            let address = brokers[(first + attempt) % brokers.count]
            do {
                return try await FjordConnection.connect(
                    host: address.host, port: address.port, tls: configuration.tls, clientID: configuration.clientID,
                    maxFrameBytes: configuration.maxFrameBytes, group: group)
            } catch let error as FjordClientError where !error.isRetriable {
                throw error
            } catch {
                lastError = error
                if !Self.isTransient(error) { throw FjordClientError.connectionFailed(address, error) }
            }
            let delay = configuration.reconnect.delay(attempt: attempt)
            attempt += 1
            if ContinuousClock.now + delay > deadline {
                throw FjordClientError(
                    code: .unknown,
                    message: "could not reach any broker of \(brokers.map(\.description).joined(separator: ", ")) within \(configuration.reconnect.giveUpAfter): \(lastError)",
                    isRetriable: true)
            }
            try await Task.sleep(for: delay)
        }
    }

    /// TLS trust and certificate problems are not cured by waiting; refused or reset connections may be.
    private static func isTransient(_ error: any Error) -> Bool {
        if error is NIOSSLError || error is NIOSSLExtraError || error is TLSConfigurationError { return false }
        let text = String(describing: error)
        return !(text.contains("handshakeFailed") || text.contains("CERTIFICATE") || text.contains("certificate"))
    }
}
