import NIOCore
import Synchronization

/// Wakes one waiting task, remembering a signal sent while nobody waits; a wait may also end
/// after a timeout. Cheaper than a task group racing a sleep.
final class WakeupSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
        var generation: UInt64 = 0
    }
    private let state = Mutex(State())

    func signal() {
        let waiter: CheckedContinuation<Void, Never>? = state.withLock { state in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns after a signal (possibly one sent before the call) or after `timeout`.
    func wait(timeout: Duration?, eventLoop: any EventLoop) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let generation: UInt64? = state.withLock { state in
                if state.pending {
                    state.pending = false
                    return nil
                }
                state.waiter = continuation
                state.generation &+= 1
                return state.generation
            }
            guard let generation else {
                continuation.resume()
                return
            }
            if let timeout {
                let nanoseconds = max(Int64(0), timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
                eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) { [self] in
                    let waiter: CheckedContinuation<Void, Never>? = state.withLock { state in
                        guard state.generation == generation, let waiter = state.waiter else { return nil }
                        state.waiter = nil
                        return waiter
                    }
                    waiter?.resume()
                }
            }
        }
    }
}
