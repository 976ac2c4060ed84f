/// The broker's connection slots, with no I/O: who is served, who is still in the TLS handshake,
/// and who is told to come back later.
///
/// Connections still in their TLS handshake draw from a pool of their own
/// (`max.handshaking.connections`); when it is full, one is closed to make room: the oldest that
/// has not sent a byte yet, else the oldest. A client sends its TLS hello as soon as it connects
/// and finishes in milliseconds, while a peer that opens bare TCP connections and never speaks
/// only ever pushes out its own. Only once TLS is up does a connection take one of the `max.connections` slots, and at most
/// `max.connections.per.address` of them per IP address.
///
/// ```swift
/// var slots = ConnectionSlotsStateMachine<Int>(limits: .init(maxConnections: 2, maxPerAddress: 0, maxHandshaking: 8))
/// _ = slots.accepted(1, address: "10.0.0.1", handshakes: true)   // .handshaking(evict: nil)
/// _ = slots.established(1)                                       // .served
/// ```
struct ConnectionSlotsStateMachine<ID: Hashable & Sendable>: Sendable {
    /// The limits enforced.
    struct Limits: Sendable, Equatable {
        /// `max.connections`: served connections at once.
        var maxConnections: Int
        /// `max.connections.per.address`: served connections from one address; 0 for no limit.
        var maxPerAddress: Int
        /// `max.handshaking.connections`: connections in the TLS handshake at once.
        var maxHandshaking: Int
        /// Connections past a limit that are told why (their handshake answered with an error);
        /// more are closed without a word, as answering costs a TLS handshake each.
        var overLimitAllowance = 64
    }

    /// Why a connection is not served.
    enum Refusal: Equatable, Sendable {
        /// `max.connections` is reached.
        case maxConnections
        /// `max.connections.per.address` is reached for its address.
        case maxPerAddress
    }

    /// What becomes of a connection just accepted.
    enum Accept: Equatable, Sendable {
        /// It does its TLS handshake in the handshaking pool; `evict` (the oldest there) must be
        /// closed to make room.
        case handshaking(evict: ID?)
        /// Served (a plaintext connection, which has no TLS handshake).
        case served
        /// Past a limit: its `Handshake` is answered with `TOO_MANY_CONNECTIONS`, then it closes.
        case overLimit(Refusal)
        /// Closed at once, without a frame (past the over-limit allowance, or the broker stops).
        case refused
    }

    /// What becomes of a connection whose TLS handshake completed.
    enum Established: Equatable, Sendable {
        /// Served.
        case served
        /// Past a limit, see ``Accept/overLimit(_:)``.
        case overLimit(Refusal)
        /// Close it without a frame.
        case refused
    }

    private enum Slot {
        case handshaking(address: String, sequence: UInt64, spoke: Bool)
        case served(address: String)
        case overLimit
    }

    let limits: Limits
    private var slots: [ID: Slot] = [:]
    private var perAddress: [String: Int] = [:]
    private var nextSequence: UInt64 = 0
    private(set) var handshakingCount = 0
    private(set) var servedCount = 0
    private(set) var overLimitCount = 0
    private(set) var stopped = false

    /// Creates empty slots.
    init(limits: Limits) {
        self.limits = limits
    }

    /// Every connection known (in any pool), to close at shutdown.
    var all: [ID] { Array(slots.keys) }

    /// Served connections from `address`.
    func servedCount(from address: String) -> Int { perAddress[address] ?? 0 }

    /// A connection from `address` was accepted; `handshakes` when TLS has yet to be negotiated.
    mutating func accepted(_ id: ID, address: String, handshakes: Bool) -> Accept {
        guard !stopped else { return .refused }
        guard handshakes else {
            switch serve(id, address: address) {
            case .served: return .served
            case .overLimit(let refusal): return .overLimit(refusal)
            case .refused: return .refused
            }
        }
        var evict: ID?
        if handshakingCount >= limits.maxHandshaking {
            evict = oldestHandshaking()
            if let evict { closed(evict) }
        }
        slots[id] = .handshaking(address: address, sequence: nextSequence, spoke: false)
        nextSequence += 1
        handshakingCount += 1
        return .handshaking(evict: evict)
    }

    /// The TLS handshake of `id` completed: it leaves the handshaking pool for a served slot.
    mutating func established(_ id: ID) -> Established {
        guard case .handshaking(let address, _, _)? = slots[id] else {
            // Evicted meanwhile (or already served): nothing to hold for it.
            return .refused
        }
        slots[id] = nil
        handshakingCount -= 1
        guard !stopped else { return .refused }
        return serve(id, address: address)
    }

    /// `id`, still in its TLS handshake, sent its first bytes: it is evicted only after every silent one.
    mutating func spoke(_ id: ID) {
        guard case .handshaking(let address, let sequence, false)? = slots[id] else { return }
        slots[id] = .handshaking(address: address, sequence: sequence, spoke: true)
    }

    /// `id` closed, whatever its pool; `true` when it was served.
    @discardableResult
    mutating func closed(_ id: ID) -> Bool {
        switch slots.removeValue(forKey: id) {
        case .handshaking?:
            handshakingCount -= 1
        case .served(let address)?:
            servedCount -= 1
            let remaining = (perAddress[address] ?? 1) - 1
            perAddress[address] = remaining > 0 ? remaining : nil
            return true
        case .overLimit?:
            overLimitCount -= 1
        case nil:
            break
        }
        return false
    }

    /// The broker stops: later connections are refused.
    mutating func stop() { stopped = true }

    private mutating func serve(_ id: ID, address: String) -> Established {
        let refusal: Refusal?
        if servedCount >= limits.maxConnections {
            refusal = .maxConnections
        } else if limits.maxPerAddress > 0, servedCount(from: address) >= limits.maxPerAddress {
            refusal = .maxPerAddress
        } else {
            refusal = nil
        }
        if let refusal {
            guard overLimitCount < limits.overLimitAllowance else { return .refused }
            slots[id] = .overLimit
            overLimitCount += 1
            return .overLimit(refusal)
        }
        slots[id] = .served(address: address)
        servedCount += 1
        perAddress[address, default: 0] += 1
        return .served
    }

    /// The connection to evict: the oldest silent one, else the oldest.
    private func oldestHandshaking() -> ID? {
        var oldest: (id: ID, spoke: Bool, sequence: UInt64)?
        for (id, slot) in slots {
            guard case .handshaking(_, let sequence, let spoke) = slot else { continue }
            let better = oldest.map { (!spoke && $0.spoke) || (spoke == $0.spoke && sequence < $0.sequence) } ?? true
            if better { oldest = (id, spoke, sequence) }
        }
        return oldest?.id
    }
}
