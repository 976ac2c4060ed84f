import NIOCore
import NIOPosix
import Synchronization

/// Shares the storage threads fairly among connections: the broker-wide gate every append and
/// read passes before it reaches storage (``FairSchedulerStateMachine`` decides; this class holds
/// its state under a lock and tells a connection's event loop when its turn comes).
///
/// Without it the storage queue is one FIFO: a flood of small batches from a few connections fills
/// it, and a bystander's single record waits behind all of them.
final class FairScheduler: Sendable {
    private struct State {
        var machine: FairSchedulerStateMachine
        var nextFlow: FairSchedulerStateMachine.FlowID = 1
        /// How each registered flow is told that its turn came.
        var deliverers: [FairSchedulerStateMachine.FlowID: @Sendable () -> Void] = [:]
    }

    private let state: Mutex<State>

    /// Fixed cost of an operation besides its bytes, so many tiny batches do not get more turns
    /// than a few large ones for the same bytes.
    static let operationOverhead = 1024
    /// What a turn credits a connection (bytes and overheads), see ``FairSchedulerStateMachine``.
    static let quantum = 16 * 1024

    /// Creates a scheduler letting `capacity` operations into storage at once.
    init(capacity: Int, quantum: Int = FairScheduler.quantum) {
        self.state = Mutex(State(machine: FairSchedulerStateMachine(capacity: capacity, quantum: quantum)))
    }

    /// Registers a connection; `deliver` is called (from any thread) each time one of its waiting
    /// operations may start.
    func register(deliver: @escaping @Sendable () -> Void) -> FairSchedulerStateMachine.FlowID {
        state.withLock { state in
            let id = state.nextFlow
            state.nextFlow += 1
            state.deliverers[id] = deliver
            return id
        }
    }

    /// Forgets a connection and its waiting operations.
    func unregister(_ flow: FairSchedulerStateMachine.FlowID) {
        state.withLock { state in
            state.machine.remove(flow: flow)
            state.deliverers[flow] = nil
        }
    }

    /// Asks to start an operation costing `cost`; `true` when it may start now.
    func acquire(_ flow: FairSchedulerStateMachine.FlowID, cost: Int) -> Bool {
        state.withLock { $0.machine.acquire(flow: flow, cost: cost) } == .granted
    }

    /// An operation granted earlier completed: the next waiting connection in turn is told.
    func release() {
        let deliver: (@Sendable () -> Void)? = state.withLock { state in
            while let flow = state.machine.release() {
                if let deliver = state.deliverers[flow] { return deliver }
                // Unregistered meanwhile (cannot happen: removal drops its waiting operations).
            }
            return nil
        }
        deliver?()
    }

    /// Operations in storage now, and operations waiting for their turn (for tests and metrics).
    var counts: (inFlight: Int, waiting: Int) {
        state.withLock { ($0.machine.inFlight, $0.machine.waitingCount) }
    }
}

/// One connection's side of the ``FairScheduler``, on its event loop: the operations waiting for
/// their turn, started in the order they were asked for.
///
/// A turn is not tied to an operation: whichever turn arrives starts the oldest waiting one, so
/// the order holds even when a turn granted at once overtakes one still on its way to the loop.
final class StorageTurns {
    private struct Waiting {
        var start: () -> Void
        var cancel: () -> Void
    }

    private let scheduler: FairScheduler
    private var flow: FairSchedulerStateMachine.FlowID = 0
    private var waiting = CircularBuffer<Waiting>(initialCapacity: 8)
    private var closed = false

    /// Registers a connection served on `eventLoop` with `scheduler`.
    init(scheduler: FairScheduler, eventLoop: any EventLoop) {
        self.scheduler = scheduler
        // The scheduler keeps this object until ``close()`` unregisters it.
        let turns = NIOLoopBound(self, eventLoop: eventLoop)
        self.flow = scheduler.register { eventLoop.execute { turns.value.turnArrived() } }
    }

    /// Operations a connection may have waiting before it is not read any more (it is read again
    /// as its operations complete): a flood waits in the client's socket, not in the broker.
    static let maxWaiting = 256

    /// Whether the connection has ``maxWaiting`` operations waiting: stop reading from it.
    var isFull: Bool { waiting.count >= Self.maxWaiting }

    /// Called when the waiting operations drop below ``maxWaiting``, to read again.
    var onRoom: (() -> Void)?

    /// Call (from any thread) when an operation started by ``run(cost:_:cancel:)`` completes.
    var release: @Sendable () -> Void { { [scheduler] in scheduler.release() } }

    /// Starts `start` now or when this connection's turn comes, after every operation asked for
    /// before it; `start` must arrange for ``release`` to be called once the operation completes.
    /// `cancel` runs instead if the connection closes first.
    func run(cost: Int, _ start: @escaping () -> Void, cancel: @escaping () -> Void = {}) {
        guard !closed else {
            cancel()
            return
        }
        waiting.append(Waiting(start: start, cancel: cancel))
        if scheduler.acquire(flow, cost: cost + FairScheduler.operationOverhead) { turnArrived() }
    }

    private func turnArrived() {
        guard !closed, !waiting.isEmpty else {
            scheduler.release()
            return
        }
        let wasFull = isFull
        waiting.removeFirst().start()
        if wasFull, !isFull { onRoom?() }
    }

    /// The connection closed: waiting operations are cancelled, later turns handed on.
    func close() {
        guard !closed else { return }
        closed = true
        scheduler.unregister(flow)
        let cancelled = waiting
        waiting.removeAll()
        onRoom = nil
        for operation in cancelled { operation.cancel() }
    }
}

@available(*, unavailable)
extension StorageTurns: Sendable {}

extension ConnectionHandler {
    /// Runs `body` on the storage threads when this connection's turn comes (see ``FairScheduler``).
    func fairStorageRead<T: Sendable>(
        cost: Int, eventLoop: any EventLoop, _ body: @escaping @Sendable () throws -> T
    ) -> EventLoopFuture<T> {
        guard let storageTurns else { return eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
        let promise = eventLoop.makePromise(of: T.self)
        let cost = min(cost, 64 * 1024)  // a read asks for up to its limit but usually returns less
        let pool = broker.storagePool
        let release = storageTurns.release
        storageTurns.run(
            cost: cost,
            {
                pool.runIfActive(eventLoop: eventLoop, body).always { _ in release() }.cascade(to: promise)
            },
            cancel: {
                promise.fail(ChannelError.ioOnClosedChannel)
            })
        return promise.futureResult
    }
}
