import NIOCore

/// Deficit round robin over connections for the storage threads, with no I/O: decides which
/// connection may hand its next operation (an append, a read) to storage.
///
/// At most `capacity` operations are in storage at once. While there is room an operation is
/// granted at once; past it, each connection ("flow") waits in its own FIFO, and a freed place
/// goes to the flows in turn: each turn adds `quantum` to a flow's deficit, which pays for its
/// operations' costs (bytes plus a fixed overhead). So a connection that floods the broker with
/// small batches gets the same share as one sending a batch now and then, and the one-at-a-time
/// client waits behind at most one turn of each other connection, not behind the flood.
///
/// ```swift
/// var scheduler = FairSchedulerStateMachine(capacity: 1, quantum: 100)
/// _ = scheduler.acquire(flow: 1, cost: 10)   // .granted
/// _ = scheduler.acquire(flow: 1, cost: 10)   // .queued
/// _ = scheduler.acquire(flow: 2, cost: 10)   // .queued
/// scheduler.release()                        // flow 1 or 2, in turn
/// ```
struct FairSchedulerStateMachine: Sendable {
    /// Identifies a flow (one connection).
    typealias FlowID = UInt64

    /// The answer to ``acquire(flow:cost:)``.
    enum Acquire: Equatable, Sendable {
        /// The operation may start now; call ``release()`` when it completes.
        case granted
        /// The flow's turn comes later: ``release()`` names it when it does.
        case queued
    }

    private struct Flow {
        /// The costs of the flow's waiting operations, oldest first.
        var waiting = CircularBuffer<Int>(initialCapacity: 4)
        /// Cost the flow may still spend in its current turn.
        var deficit = 0
    }

    /// Operations allowed in storage at once.
    let capacity: Int
    /// Cost credited to a flow per turn.
    let quantum: Int
    /// Operations granted and not yet released.
    private(set) var inFlight = 0
    /// Flows with waiting operations.
    private var flows: [FlowID: Flow] = [:]
    /// The order of turns: every flow with waiting operations, once.
    private var turns = CircularBuffer<FlowID>(initialCapacity: 16)

    /// Creates a scheduler letting `capacity` operations into storage at once and crediting each
    /// flow `quantum` per turn (both at least 1).
    init(capacity: Int, quantum: Int) {
        self.capacity = max(1, capacity)
        self.quantum = max(1, quantum)
    }

    /// Number of operations waiting, over every flow.
    var waitingCount: Int { flows.values.reduce(0) { $0 + $1.waiting.count } }

    /// Number of operations `flow` has waiting.
    func waitingCount(of flow: FlowID) -> Int { flows[flow]?.waiting.count ?? 0 }

    /// Asks to start an operation of `flow` costing `cost`.
    mutating func acquire(flow: FlowID, cost: Int) -> Acquire {
        // Operations wait only while storage is full, so room means nobody is waiting.
        if inFlight < capacity, turns.isEmpty {
            inFlight += 1
            return .granted
        }
        if flows[flow] == nil {
            flows[flow] = Flow()
            turns.append(flow)
        }
        flows[flow]?.waiting.append(max(1, cost))
        return .queued
    }

    /// An operation completed. Returns the flow whose oldest waiting operation may start now (it
    /// is counted in flight), or `nil` when nobody waits.
    mutating func release() -> FlowID? {
        inFlight = max(0, inFlight - 1)
        guard inFlight < capacity else { return nil }
        guard let next = nextGrant() else { return nil }
        inFlight += 1
        return next
    }

    /// Forgets the waiting operations of `flow` (its connection closed). Operations it has in
    /// flight are still released by their completions.
    mutating func remove(flow: FlowID) {
        guard flows.removeValue(forKey: flow) != nil else { return }
        if let position = turns.firstIndex(of: flow) { _ = turns.remove(at: position) }
    }

    /// The flow at the front of the turns if its deficit pays for its oldest operation; otherwise
    /// credits it a quantum and moves it to the back. When a whole round cannot pay, every flow
    /// is credited the rounds the nearest one needs at once.
    private mutating func nextGrant() -> FlowID? {
        var unpaidInARow = 0
        while let id = turns.first, var flow = flows[id], let cost = flow.waiting.first {
            if flow.deficit >= cost {
                flow.deficit -= cost
                flow.waiting.removeFirst()
                if flow.waiting.isEmpty {
                    // An idle flow keeps no credit (deficit round robin).
                    flows[id] = nil
                    turns.removeFirst()
                } else {
                    flows[id] = flow
                }
                return id
            }
            flow.deficit += quantum
            flows[id] = flow
            turns.removeFirst()
            turns.append(id)
            unpaidInARow += 1
            if unpaidInARow >= turns.count {
                creditRoundsForNearest()
                unpaidInARow = 0
            }
        }
        return nil
    }

    /// Adds to every flow's deficit the whole rounds the flow closest to paying still needs.
    private mutating func creditRoundsForNearest() {
        let rounds = flows.values.compactMap { flow in
            flow.waiting.first.map { max(0, ($0 - flow.deficit + quantum - 1) / quantum) }
        }.min() ?? 0
        guard rounds > 1 else { return }
        for id in flows.keys { flows[id]?.deficit += (rounds - 1) * quantum }
    }
}
