/// What one connection may hold in memory, with no I/O: the bytes queued toward the client, the
/// responses being prepared, and the request bytes received but not yet handled.
/// ``ConnectionHandler`` asks it whether to read more requests and whether to prepare the next
/// response that carries records (a fetch or a subscription push), and tells it what it queued,
/// wrote and received.
///
/// The rules:
/// - Requests are read, and record responses prepared, only while the bytes queued plus the
///   bytes being prepared are below the connection's limit (`connection.max.queued.bytes`). One
///   response may overshoot the limit (a fetch returns at least one whole batch).
/// - A prepared record response is charged to the broker-wide budget (`broker.max.queued.bytes`),
///   except one of at most ``allowance`` bytes on a connection with nothing queued: a client that
///   reads its responses gets small ones even while clients that do not have spent the budget.
///   A response the budget cannot take is held (its bytes are views of the log, not copies) and
///   the connection neither reads requests nor prepares more until it is sent.
/// - Request bytes received (a partial frame, produce batches being appended) beyond
///   ``requestAllowance`` are read only while the broker-wide request budget (`queued.max.request.bytes`)
///   has room.
struct ConnectionWriteBudget: Equatable {
    /// Bytes a connection may hold without the broker-wide budgets: what one small response or
    /// one small request needs.
    static let allowance = 64 << 10

    /// Request bytes a connection may hold without the broker-wide request budget (one small
    /// request); kept small because every connection may hold it.
    static let requestAllowance = 16 << 10

    /// `connection.max.queued.bytes`.
    let limit: Int
    /// Bytes written toward the client and not yet taken by the socket.
    private(set) var queuedBytes = 0
    /// Estimated bytes of record responses being read from the logs.
    private(set) var preparingBytes = 0
    /// Record responses prepared but waiting for the broker-wide budget.
    private(set) var heldResponses = 0
    /// Request bytes received and not yet handled (partial frames, appends in flight).
    private(set) var requestBytes = 0

    /// Creates the budget of a connection limited to `limit` queued bytes.
    init(limit: Int) {
        self.limit = limit
    }

    /// What the connection waits for before reading requests.
    enum ReadBlocker: Equatable {
        /// Its queued and prepared responses are at its limit, or a response waits for the broker budget.
        case writes
        /// It holds more request bytes than its allowance while the broker's request budget is spent.
        case requestBudget
    }

    /// Why the connection may not read requests now, or `nil` if it may.
    func readBlocker(requestBudgetHasRoom: Bool) -> ReadBlocker? {
        if queuedBytes + preparingBytes >= limit || heldResponses > 0 { return .writes }
        if requestBytes > Self.requestAllowance && !requestBudgetHasRoom { return .requestBudget }
        return nil
    }

    /// Whether a record response may start being prepared.
    var mayPrepare: Bool { queuedBytes + preparingBytes < limit && heldResponses == 0 }

    /// A record response of about `estimate` bytes started being read.
    mutating func beginPreparing(estimate: Int) { preparingBytes += estimate }

    /// The response that was estimated at `estimate` bytes is read (or abandoned).
    mutating func endPreparing(estimate: Int) { preparingBytes = max(0, preparingBytes - estimate) }

    /// How a prepared record response of `bytes` is paid for.
    enum Charge: Equatable {
        /// From the connection's own allowance: charged to the broker budget unconditionally.
        case allowance
        /// Only if the broker budget has room; otherwise held.
        case brokerBudget
    }

    /// How a prepared record response of `bytes` is paid for.
    func charge(for bytes: Int) -> Charge {
        queuedBytes == 0 && heldResponses == 0 && bytes <= Self.allowance ? .allowance : .brokerBudget
    }

    /// A prepared response waits for the broker budget.
    mutating func hold() { heldResponses += 1 }

    /// A held response got the broker budget (or was dropped).
    mutating func unhold() { heldResponses = max(0, heldResponses - 1) }

    /// `bytes` were written toward the client.
    mutating func queued(_ bytes: Int) { queuedBytes += bytes }

    /// `bytes` written before left the process (or the channel closed); returns whether that
    /// brought the connection below its limit, so reading and preparing may resume.
    @discardableResult
    mutating func written(_ bytes: Int) -> Bool {
        let before = queuedBytes + preparingBytes
        queuedBytes = max(0, queuedBytes - bytes)
        return before >= limit && queuedBytes + preparingBytes < limit || queuedBytes == 0
    }

    /// Sets the request bytes the connection holds; returns the change to charge to (positive)
    /// or release from (negative) the broker's request budget.
    mutating func holdRequestBytes(_ bytes: Int) -> Int {
        defer { requestBytes = bytes }
        return bytes - requestBytes
    }
}
