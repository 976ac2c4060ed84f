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

    /// A new producer id.
    func next() async throws(BrokerError) -> Int64 {
        if block.isEmpty {
            block = try await store.reserveProducerIDs(count: Self.blockSize)
        }
        return block.popFirst()!
    }
}
