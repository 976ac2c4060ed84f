@testable import FjordBroker
import Synchronization
import Testing

/// The rules of what a connection may hold, with no I/O, and the broker-wide byte budget.
@Suite("Connection write budget")
struct ConnectionWriteBudgetTests {
    @Test func readingAndPreparingStopAtTheLimitAndResumeBelowIt() {
        var budget = ConnectionWriteBudget(limit: 1000)
        #expect(budget.readBlocker(requestBudgetHasRoom: true) == nil)
        #expect(budget.mayPrepare)
        budget.queued(600)
        #expect(budget.mayPrepare)
        budget.beginPreparing(estimate: 500)
        // Queued plus being prepared reach the limit: no more requests, no more reads.
        #expect(budget.readBlocker(requestBudgetHasRoom: true) == .writes)
        #expect(!budget.mayPrepare)
        budget.endPreparing(estimate: 500)
        budget.queued(2000)  // the response overshoots the limit (one whole batch)
        #expect(!budget.mayPrepare)
        let stillAtLimit = !budget.written(1000)
        #expect(stillAtLimit, "still at or above the limit")
        let belowLimit = budget.written(1000)
        #expect(belowLimit, "below the limit: resume")
        #expect(budget.mayPrepare)
        #expect(budget.queuedBytes == 600)
        let drained = budget.written(600)
        #expect(drained)
        #expect(budget.queuedBytes == 0)
    }

    @Test func aSmallResponseOnAnIdleConnectionUsesItsAllowanceOthersTheBrokerBudget() {
        var budget = ConnectionWriteBudget(limit: 1 << 20)
        #expect(budget.charge(for: ConnectionWriteBudget.allowance) == .allowance)
        #expect(budget.charge(for: ConnectionWriteBudget.allowance + 1) == .brokerBudget)
        budget.queued(10)
        #expect(budget.charge(for: 100) == .brokerBudget, "something is queued already")
        _ = budget.written(10)
        budget.hold()
        #expect(budget.charge(for: 100) == .brokerBudget, "a response is held: keep the order")
        #expect(!budget.mayPrepare)
        #expect(budget.readBlocker(requestBudgetHasRoom: true) == .writes)
        budget.unhold()
        #expect(budget.mayPrepare)
        #expect(budget.readBlocker(requestBudgetHasRoom: true) == nil)
    }

    @Test func requestBytesBeyondTheAllowanceWaitForTheBrokerRequestBudget() {
        var budget = ConnectionWriteBudget(limit: 1 << 20)
        let first = budget.holdRequestBytes(1000)
        #expect(first == 1000)
        #expect(budget.readBlocker(requestBudgetHasRoom: false) == nil, "within the allowance")
        let second = budget.holdRequestBytes(ConnectionWriteBudget.requestAllowance + 1)
        #expect(second == ConnectionWriteBudget.requestAllowance + 1 - 1000)
        #expect(budget.readBlocker(requestBudgetHasRoom: false) == .requestBudget)
        #expect(budget.readBlocker(requestBudgetHasRoom: true) == nil)
        let released = budget.holdRequestBytes(0)
        #expect(released == -(ConnectionWriteBudget.requestAllowance + 1))
        #expect(budget.requestBytes == 0)
    }

    @Test func theBrokerBudgetReservesWhileBelowItsCapacityAndWakesWaitersOnRelease() {
        let budget = ByteBudget(capacity: 100)
        #expect(budget.tryReserve(60))
        #expect(budget.tryReserve(60), "below capacity: one reservation may overshoot")
        #expect(budget.usedBytes == 120)
        #expect(!budget.tryReserve(1))
        let woken = Atomic<Int>(0)
        budget.notifyWhenRoom { woken.add(1, ordering: .relaxed) }
        let cancelled = budget.notifyWhenRoom { woken.add(100, ordering: .relaxed) }
        budget.cancelNotification(cancelled)
        #expect(budget.waiterCount == 1)
        budget.release(10)
        #expect(woken.load(ordering: .relaxed) == 0, "still at capacity")
        budget.release(60)
        #expect(woken.load(ordering: .relaxed) == 1)
        #expect(budget.waiterCount == 0)
        budget.add(500)
        #expect(!budget.hasRoom)
        budget.release(550)
        #expect(budget.usedBytes == 0)
        // With room already, a new waiter is called at once.
        budget.notifyWhenRoom { woken.add(1, ordering: .relaxed) }
        #expect(woken.load(ordering: .relaxed) == 2)
    }
}
