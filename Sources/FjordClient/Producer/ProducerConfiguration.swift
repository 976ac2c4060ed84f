/// How a producer batches, acknowledges and retries.
///
/// ```swift
/// var configuration = ProducerConfiguration()
/// configuration.acks = .durable
/// configuration.linger = .milliseconds(2)
/// configuration.batchBytes = 256 << 10
/// let producer = client.makeProducer(configuration: configuration)
/// ```
public struct ProducerConfiguration: Sendable, Hashable {
    /// When the broker answers.
    public enum Acks: Sendable, Hashable {
        /// No answer: fastest, a lost connection loses records silently, no idempotence.
        case none
        /// Once written to the leader's log (page cache). Kafka's `acks=1`.
        case leader
        /// Once fsynced on the leader (group commit with concurrent batches).
        case durable
    }

    /// Default ``Acks/leader``.
    public var acks: Acks = .leader
    /// Retries never duplicate or reorder records: the producer gets an id from the broker and
    /// numbers its batches per partition. Default on; ignored with ``Acks/none``.
    public var idempotent = true
    /// How long a batch that is not full waits for more records. Default 5 ms (Kafka 3.x too).
    public var linger: Duration = .milliseconds(5)
    /// A partition's batch is sent once it holds this many bytes. Default 128 KiB.
    public var batchBytes = 128 << 10
    /// Batches awaiting an answer per partition (at most 5 with idempotence, as the broker remembers 5).
    public var maxInFlightPerPartition = 5
    /// Batches awaiting an answer on the connection, across partitions.
    public var maxInFlight = 64
    /// Bytes of records buffered before ``FjordProducer/send(_:)`` waits for room. Default 64 MiB.
    public var bufferBytes = 64 << 20
    /// How long a record may take from `send` to an answer, retries included, before it fails
    /// with `REQUEST_TIMED_OUT`. Default 120 s.
    public var deliveryTimeout: Duration = .seconds(120)

    /// The default configuration.
    public init() {}
}
