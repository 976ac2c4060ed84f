/// Hands out idempotent-producer ids from blocks reserved in the ``MetadataStore``, so an id is
/// never given twice, even across restarts, while most calls touch no disk.
actor ProducerIDAllocator {
    /// Ids reserved per trip to the store.
    static let blockSize = 1000

    private let store: any MetadataStore
    private var block: Range<Int64> = 0..<0

    init(store: any MetadataStore) {
        self.store = store
    }

    /// Whether the block in hand was reserved in this process (before that, ids below it are unknown).
    private var reserved = false

    /// A new producer id.
    func next() async throws(BrokerError) -> Int64 {
        if block.isEmpty { try await reserveBlock() }
        return block.popFirst()!
    }

    /// Whether `id` may have been handed out: it lies below every id not yet handed out. An epoch
    /// bump for any other id is refused, so a client cannot claim (and fence) ids it never got.
    func mayHaveIssued(_ id: Int64) async throws(BrokerError) -> Bool {
        if !reserved { try await reserveBlock() }
        return id >= 1 && id < block.lowerBound
    }

    private func reserveBlock() async throws(BrokerError) {
        block = try await store.reserveProducerIDs(count: Self.blockSize)
        reserved = true
    }
}
