import NIOCore
import Synchronization
import Testing

@testable import FjordBroker

/// The pure parts of fair service: the storage scheduler, the connection slots and the quota
/// buckets, driven by hand with no I/O and no real clock.
@Suite("Fair service state machines")
struct FairnessStateMachineTests {
    // MARK: FairSchedulerStateMachine

    @Test func operationsStartAtOnceWhileThereIsRoomAndWaitPastIt() {
        var scheduler = FairSchedulerStateMachine(capacity: 2, quantum: 100)
        #expect(scheduler.acquire(flow: 1, cost: 10) == .granted)
        #expect(scheduler.acquire(flow: 2, cost: 10) == .granted)
        #expect(scheduler.acquire(flow: 1, cost: 10) == .queued)
        #expect(scheduler.inFlight == 2)
        #expect(scheduler.waitingCount == 1)
        #expect(scheduler.release() == 1)
        #expect(scheduler.inFlight == 2)
        #expect(scheduler.release() == nil)
        #expect(scheduler.release() == nil)
        #expect(scheduler.inFlight == 0)
        // Nobody waits, so room means a grant again.
        #expect(scheduler.acquire(flow: 3, cost: 10) == .granted)
    }

    @Test func aBystanderWaitsOneTurnOfTheFloodNotTheWholeFlood() {
        var scheduler = FairSchedulerStateMachine(capacity: 1, quantum: 100)
        #expect(scheduler.acquire(flow: 1, cost: 10) == .granted)
        // Eight flooders queue 1000 operations each, then the bystander asks for one.
        for flow in FairSchedulerStateMachine.FlowID(1)...8 {
            for _ in 0..<1000 { _ = scheduler.acquire(flow: flow, cost: 10) }
        }
        #expect(scheduler.acquire(flow: 99, cost: 10) == .queued)
        var grantsBeforeBystander = 0
        while let flow = scheduler.release(), flow != 99 { grantsBeforeBystander += 1 }
        // At most one turn (quantum / cost = 10 operations) of each of the eight flooders.
        #expect(grantsBeforeBystander <= 8 * 10)
        #expect(scheduler.waitingCount == 8000 - grantsBeforeBystander)
    }

    @Test(arguments: [(100, 1000), (10, 4000), (50, 65_536)])
    func flowsGetEqualBytesWhateverTheirOperationSizes(smallCost: Int, largeCost: Int) {
        var scheduler = FairSchedulerStateMachine(capacity: 1, quantum: 4096)
        #expect(scheduler.acquire(flow: 0, cost: 1) == .granted)
        for _ in 0..<100_000 { _ = scheduler.acquire(flow: 1, cost: smallCost) }
        for _ in 0..<1000 { _ = scheduler.acquire(flow: 2, cost: largeCost) }
        var bytes: [FairSchedulerStateMachine.FlowID: Int] = [1: 0, 2: 0]
        var largeOperations = 0
        while largeOperations < 20, let flow = scheduler.release() {
            bytes[flow, default: 0] += flow == 1 ? smallCost : largeCost
            if flow == 2 { largeOperations += 1 }
        }
        let small = Double(bytes[1] ?? 0)
        let large = Double(bytes[2] ?? 0)
        #expect(small > 0 && large > 0)
        // Within a couple of quanta of each other, though one sends 10 to 65536 times smaller operations.
        #expect(abs(small - large) <= Double(2 * max(4096, largeCost)), "small \(small) large \(large)")
    }

    @Test func aRemovedFlowIsSkippedAndItsPlacesGoToOthers() {
        var scheduler = FairSchedulerStateMachine(capacity: 1, quantum: 10)
        #expect(scheduler.acquire(flow: 1, cost: 5) == .granted)
        for _ in 0..<5 { _ = scheduler.acquire(flow: 1, cost: 5) }
        _ = scheduler.acquire(flow: 2, cost: 5)
        scheduler.remove(flow: 1)
        #expect(scheduler.waitingCount(of: 1) == 0)
        #expect(scheduler.release() == 2)
        #expect(scheduler.release() == nil)
        #expect(scheduler.inFlight == 0)
    }

    @Test func anOperationCostingManyQuantaIsServed() {
        var scheduler = FairSchedulerStateMachine(capacity: 1, quantum: 1)
        #expect(scheduler.acquire(flow: 1, cost: 1) == .granted)
        _ = scheduler.acquire(flow: 1, cost: 8 << 20)
        _ = scheduler.acquire(flow: 2, cost: 3 << 20)
        #expect(scheduler.release() == 2)
        #expect(scheduler.release() == 1)
    }

    // MARK: ConnectionSlotsStateMachine

    typealias Slots = ConnectionSlotsStateMachine<Int>

    @Test func connectionsInTheTLSHandshakeNeverTakeServedSlots() {
        var slots = Slots(limits: .init(maxConnections: 2, maxPerAddress: 0, maxHandshaking: 3))
        // A peer opens bare TCP connections that never handshake: the oldest make room.
        #expect(slots.accepted(1, address: "a", handshakes: true) == .handshaking(evict: nil))
        #expect(slots.accepted(2, address: "a", handshakes: true) == .handshaking(evict: nil))
        #expect(slots.accepted(3, address: "a", handshakes: true) == .handshaking(evict: nil))
        #expect(slots.accepted(4, address: "a", handshakes: true) == .handshaking(evict: 1))
        // A real client arrives and finishes TLS before the pool turns over.
        #expect(slots.accepted(10, address: "a", handshakes: true) == .handshaking(evict: 2))
        #expect(slots.established(10) == .served)
        #expect(slots.handshakingCount == 2)
        #expect(slots.servedCount == 1)
        // The flood keeps going; the served client is untouched.
        for id in 20..<100 { _ = slots.accepted(id, address: "a", handshakes: true) }
        #expect(slots.handshakingCount == 3)
        #expect(slots.servedCount == 1)
        // An evicted connection that completes TLS late gets nothing.
        #expect(slots.established(4) == .refused)
    }

    @Test func silentConnectionsAreEvictedBeforeOnesThatSentTheirHello() {
        var slots = Slots(limits: .init(maxConnections: 10, maxPerAddress: 0, maxHandshaking: 3))
        _ = slots.accepted(1, address: "a", handshakes: true)  // a slow client: speaks, handshake under way
        slots.spoke(1)
        _ = slots.accepted(2, address: "a", handshakes: true)  // silent
        _ = slots.accepted(3, address: "a", handshakes: true)  // silent
        #expect(slots.accepted(4, address: "a", handshakes: true) == .handshaking(evict: 2))
        #expect(slots.accepted(5, address: "a", handshakes: true) == .handshaking(evict: 3))
        #expect(slots.accepted(6, address: "a", handshakes: true) == .handshaking(evict: 4))
        // Once only speakers are left, the oldest goes.
        slots.spoke(5)
        slots.spoke(6)
        #expect(slots.accepted(7, address: "a", handshakes: true) == .handshaking(evict: 1))
    }

    @Test func servedConnectionsAreLimitedPerAddressAndOverall() {
        var slots = Slots(limits: .init(maxConnections: 3, maxPerAddress: 2, maxHandshaking: 10, overLimitAllowance: 1))
        for id in 1...3 { _ = slots.accepted(id, address: "a", handshakes: true) }
        #expect(slots.established(1) == .served)
        #expect(slots.established(2) == .served)
        #expect(slots.established(3) == .overLimit(.maxPerAddress))
        #expect(slots.accepted(4, address: "b", handshakes: false) == .served)
        #expect(slots.servedCount(from: "a") == 2)
        // Full overall; the over-limit allowance (1) is taken by 3, so 5 is refused without a word.
        #expect(slots.accepted(5, address: "c", handshakes: false) == .refused)
        slots.closed(3)
        #expect(slots.accepted(6, address: "c", handshakes: false) == .overLimit(.maxConnections))
        // Closing frees the slot and the address's count.
        let wasServed = slots.closed(1)
        #expect(wasServed)
        #expect(slots.servedCount(from: "a") == 1)
        #expect(slots.accepted(7, address: "a", handshakes: false) == .served)
        slots.stop()
        #expect(slots.accepted(8, address: "d", handshakes: false) == .refused)
        #expect(Set(slots.all) == [2, 4, 6, 7])
    }

    // MARK: Quotas

    @Test func aTokenBucketThrottlesByTheDebtAtItsRate() {
        var bucket = TokenBucket(bytesPerSecond: 1000, now: 0)
        #expect(bucket.spend(600, now: 0) == 0)
        #expect(bucket.spend(400, now: 0) == 0)
        // 500 bytes of debt at 1000 bytes/s: half a second.
        #expect(bucket.spend(500, now: 0) == 500_000_000)
        // A quarter second later half the debt is paid.
        #expect(bucket.spend(0, now: 250_000_000) == 250_000_000)
        // It refills to one second's worth, no more.
        #expect(bucket.isFull(now: 10_000_000_000))
        #expect(bucket.spend(1000, now: 10_000_000_000) == 0)
        #expect(bucket.spend(1, now: 10_000_000_000) == 1_000_000)
    }

    @Test func quotasAreCountedPerClientIdAndKind() {
        let now = QuotaTestClock()
        let quotas = ClientQuotas(producerBytesPerSecond: 1000, consumerBytesPerSecond: 0, clock: { now.nanoseconds })
        #expect(quotas.isEnabled)
        #expect(quotas.record(.produce, clientID: "a", bytes: 1500) == 500)
        #expect(quotas.record(.produce, clientID: "b", bytes: 1000) == 0)
        // No consumer quota configured.
        #expect(quotas.record(.fetch, clientID: "a", bytes: 1 << 30) == 0)
        now.advance(to: 2_000_000_000)
        #expect(quotas.record(.produce, clientID: "a", bytes: 1000) == 0)
        #expect(!ClientQuotas(producerBytesPerSecond: 0, consumerBytesPerSecond: 0).isEnabled)
    }
}

/// A clock the test sets.
final class QuotaTestClock: Sendable {
    private let value = Atomic<Int64>(0)
    var nanoseconds: Int64 { value.load(ordering: .relaxed) }
    func advance(to nanoseconds: Int64) { value.store(nanoseconds, ordering: .relaxed) }
}
