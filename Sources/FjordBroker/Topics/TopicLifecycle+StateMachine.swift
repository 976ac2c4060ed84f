import FjordProto

/// The lifecycle of every topic name on this broker, with no I/O: which incarnation of a name is
/// live, which of its partitions are open, and which admin operation holds the name.
///
/// A name goes `absent → creating → live → deleting → absent`; `CreatePartitions` and
/// `AlterTopicConfig` keep it live. Admin operations on one name run one at a time: each first
/// ``acquire(_:waiter:)``s the name (queued in arrival order behind the operation holding it) and
/// ``release(_:)``s it when done, so a create arriving while a delete of the same name closes its
/// files waits for the delete, and never sees a half-deleted directory. Requests (produce, fetch,
/// subscribe, list offsets) look partitions up with ``partition(topic:index:)``, which only finds
/// partitions of a live topic: a request racing a create or a delete gets
/// `UNKNOWN_TOPIC_OR_PARTITION`.
///
/// ``PartitionRegistry`` holds one of these behind a lock; ``TopicManager`` drives it. `Handle`
/// is the open partition (``Partition`` in the broker; anything in tests).
///
/// ```swift
/// var topics = TopicLifecycle<String>()
/// _ = topics.acquire("orders", waiter: 1)            // true: the name was free
/// try topics.beginCreate(record)                     // creating: invisible to requests
/// topics.setPartition(.success("log"), topic: "orders", topicID: record.topicID, index: 0)
/// try topics.finishCreate("orders", topicID: record.topicID)   // live
/// _ = topics.release("orders")                       // the next waiter, if any
/// ```
struct TopicLifecycle<Handle: Sendable>: Sendable {
    /// Where one name stands.
    enum Phase: Equatable, Sendable {
        /// No topic has the name (an entry exists only to queue admin operations).
        case absent
        /// A create holds the name; its partitions are being opened.
        case creating
        /// The topic serves requests.
        case live
        /// A delete holds the name; its partitions are being closed and its files removed.
        case deleting
    }

    /// One partition slot of a topic.
    enum Slot: Sendable {
        /// Being opened (a new topic or added partitions).
        case opening
        /// Open.
        case online(Handle)
        /// Its log could not be opened; the error says why.
        case offline(BrokerError)

        var handle: Handle? {
            if case .online(let handle) = self { return handle }
            return nil
        }
    }

    struct Entry: Sendable {
        var phase: Phase = .absent
        /// The incarnation's durable description; `nil` while absent.
        var record: TopicRecord?
        var slots: [Slot] = []
        /// Whether an admin operation holds the name.
        var held = false
        /// Operations waiting for the name, oldest first.
        var waiters: [UInt64] = []
    }

    private(set) var entries: [String: Entry] = [:]
    /// Set when the broker stops: no admin operation may start.
    private(set) var stopping = false

    init() {}

    // MARK: Serializing admin operations

    /// Takes the name for an admin operation: `true` when it was free (the operation proceeds),
    /// `false` when `waiter` was queued behind the holder (``release(_:)`` hands the name over).
    mutating func acquire(_ name: String, waiter: UInt64) -> Bool {
        var entry = entries[name] ?? Entry()
        defer { entries[name] = entry }
        guard entry.held else {
            entry.held = true
            return true
        }
        entry.waiters.append(waiter)
        return false
    }

    /// Gives up the name: returns the waiter that now holds it, or `nil` when none was waiting.
    mutating func release(_ name: String) -> UInt64? {
        guard var entry = entries[name] else { return nil }
        if !entry.waiters.isEmpty {
            let next = entry.waiters.removeFirst()
            entries[name] = entry
            return next
        }
        entry.held = false
        entries[name] = entry.phase == .absent ? nil : entry
        return nil
    }

    /// No admin operation may start from now on (they fail with `BROKER_SHUTTING_DOWN`).
    mutating func stop() { stopping = true }

    /// Throws `BROKER_SHUTTING_DOWN` once ``stop()`` was called.
    func checkRunning() throws(BrokerError) {
        if stopping { throw BrokerError(.brokerShuttingDown, "the broker is shutting down; topic administration stopped") }
    }

    // MARK: Transitions (the caller holds the name)

    /// A topic found in the metadata store at start-up: live, its partitions being opened.
    mutating func load(_ record: TopicRecord) {
        entries[record.name] = Entry(
            phase: .live, record: record, slots: Array(repeating: .opening, count: record.partitions.count))
    }

    /// `absent → creating`. Throws `TOPIC_ALREADY_EXISTS` when another incarnation holds the name.
    mutating func beginCreate(_ record: TopicRecord) throws(BrokerError) {
        try checkRunning()
        var entry = entries[record.name] ?? Entry()
        guard entry.phase == .absent else {
            throw BrokerError(.topicAlreadyExists, "a topic named \"\(record.name)\" already exists")
        }
        entry.phase = .creating
        entry.record = record
        entry.slots = Array(repeating: .opening, count: record.partitions.count)
        entries[record.name] = entry
    }

    /// `creating → live`.
    mutating func finishCreate(_ name: String, topicID: String) throws(BrokerError) {
        guard var entry = entries[name], entry.phase == .creating, entry.record?.topicID == topicID else {
            throw BrokerError(.unknown, "topic \"\(name)\" is not being created with id \(topicID)")
        }
        entry.phase = .live
        entries[name] = entry
    }

    /// `creating → absent`: the create failed before the topic became durable. Returns the
    /// partitions opened so far, for the caller to close.
    mutating func abortCreate(_ name: String, topicID: String) -> [Handle] {
        guard var entry = entries[name], entry.phase == .creating, entry.record?.topicID == topicID else { return [] }
        let handles = entry.slots.compactMap(\.handle)
        entry.phase = .absent
        entry.record = nil
        entry.slots = []
        entries[name] = entry
        return handles
    }

    /// `live → deleting`: from now on requests do not find the topic. Returns the record and the
    /// open partitions, for the caller to close. Throws `UNKNOWN_TOPIC_OR_PARTITION` when no topic
    /// has the name.
    mutating func beginDelete(_ name: String) throws(BrokerError) -> (record: TopicRecord, partitions: [Handle]) {
        try checkRunning()
        guard var entry = entries[name], entry.phase == .live, let record = entry.record else {
            throw Self.unknownTopic(name)
        }
        entry.phase = .deleting
        entries[name] = entry
        return (record, entry.slots.compactMap(\.handle))
    }

    /// `deleting → absent`: the logs are closed and the files gone.
    mutating func finishDelete(_ name: String) {
        guard var entry = entries[name], entry.phase == .deleting else { return }
        entry.phase = .absent
        entry.record = nil
        entry.slots = []
        entries[name] = entry
    }

    /// `live → deleting → live` when a delete failed before anything was closed (the store
    /// refused it).
    mutating func abortDelete(_ name: String) {
        guard var entry = entries[name], entry.phase == .deleting else { return }
        entry.phase = .live
        entries[name] = entry
    }

    /// Replaces the live topic's record (new configs, more partitions); new partitions start as
    /// `opening`. Throws `UNKNOWN_TOPIC_OR_PARTITION` when the topic is not live.
    mutating func update(_ record: TopicRecord) throws(BrokerError) {
        try checkRunning()
        guard var entry = entries[record.name], entry.phase == .live, entry.record?.topicID == record.topicID else {
            throw Self.unknownTopic(record.name)
        }
        entry.record = record
        while entry.slots.count < record.partitions.count { entry.slots.append(.opening) }
        entries[record.name] = entry
    }

    /// Sets partition `index` of incarnation `topicID` (opened, reopened or failed). Returns
    /// `false`, leaving everything as it was, when that incarnation no longer holds the name or
    /// the broker is stopping (the caller closes what it opened).
    @discardableResult
    mutating func setPartition(_ result: Result<Handle, BrokerError>, topic: String, topicID: String, index: Int) -> Bool {
        guard !stopping, var entry = entries[topic], entry.phase == .creating || entry.phase == .live,
            entry.record?.topicID == topicID, index >= 0, index < entry.slots.count
        else { return false }
        switch result {
        case .success(let handle): entry.slots[index] = .online(handle)
        case .failure(let error): entry.slots[index] = .offline(error)
        }
        entries[topic] = entry
        return true
    }

    // MARK: Lookups

    /// The open partition of a live topic; `UNKNOWN_TOPIC_OR_PARTITION` for a name being created
    /// or deleted, for an index out of range or being opened; the error of an offline partition.
    func partition(topic: String, index: Int) -> Result<Handle, BrokerError> {
        guard let entry = entries[topic], entry.phase == .live else { return .failure(Self.unknownTopic(topic)) }
        guard index >= 0, index < entry.slots.count else {
            return .failure(
                BrokerError(
                    .unknownTopicOrPartition, "topic \"\(topic)\" has no partition \(index) (it has \(entry.slots.count))"))
        }
        switch entry.slots[index] {
        case .online(let handle): return .success(handle)
        case .offline(let error): return .failure(error)
        case .opening:
            return .failure(BrokerError(.unknownTopicOrPartition, "\(topic)-\(index) is being created; retry"))
        }
    }

    /// The record of the live topic named `name`, or `UNKNOWN_TOPIC_OR_PARTITION`.
    func record(_ name: String) -> Result<TopicRecord, BrokerError> {
        guard let entry = entries[name], entry.phase == .live, let record = entry.record else {
            return .failure(Self.unknownTopic(name))
        }
        return .success(record)
    }

    /// Every live topic, sorted by name.
    var liveRecords: [TopicRecord] {
        entries.values.compactMap { $0.phase == .live ? $0.record : nil }.sorted { $0.name < $1.name }
    }

    /// Number of partitions of a live topic, or `nil`.
    func partitionCount(topic: String) -> Int? {
        guard let entry = entries[topic], entry.phase == .live else { return nil }
        return entry.slots.count
    }

    /// The open partitions of a live topic.
    func partitions(topic: String) -> [Handle] {
        guard let entry = entries[topic], entry.phase == .live else { return [] }
        return entry.slots.compactMap(\.handle)
    }

    /// Every open partition of every name, whatever its phase.
    var allPartitions: [Handle] { entries.values.flatMap { $0.slots.compactMap(\.handle) } }

    /// Where `name` stands.
    func phase(of name: String) -> Phase { entries[name]?.phase ?? .absent }

    static func unknownTopic(_ name: String) -> BrokerError {
        BrokerError(.unknownTopicOrPartition, "there is no topic named \"\(name)\"")
    }
}
