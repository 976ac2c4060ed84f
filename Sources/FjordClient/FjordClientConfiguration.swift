public import FjordTLS

/// Where and how a client connects.
///
/// ```swift
/// var configuration = FjordClientConfiguration(brokers: [BrokerAddress("broker-1:7420")!])
/// configuration.tls = ClientTLSConfiguration(
///     trustRootsPath: "ca.pem", certificateChainPath: "client.pem", privateKeyPath: "client-key.pem")
/// let client = FjordClient(configuration: configuration)
/// ```
public struct FjordClientConfiguration: Sendable {
    /// Brokers to try, in order; the client moves to the next one when a connection fails.
    public var brokers: [BrokerAddress]
    /// TLS settings (trusted CA, optional client certificate for mutual TLS); `nil` for a plaintext
    /// listener (trusted networks only).
    public var tls: ClientTLSConfiguration?
    /// The name the broker logs for this client.
    public var clientID: String = "fjord-swift"
    /// The largest frame the client accepts.
    public var maxFrameBytes: Int = 16 << 20
    /// Backoff between connection attempts.
    public var reconnect = ReconnectPolicy()
    /// How long one request may wait for its answer before failing with `REQUEST_TIMED_OUT`.
    public var requestTimeout: Duration = .seconds(30)

    /// Creates a configuration; by default a TLS connection to the local broker that trusts the CA in `tls`.
    public init(brokers: [BrokerAddress] = [BrokerAddress(host: "127.0.0.1")], tls: ClientTLSConfiguration? = nil) {
        self.brokers = brokers
        self.tls = tls
    }
}
