@testable import FjordBroker
import FjordProto
import Testing

/// The per-name topic lifecycle and the serialization of admin operations, with no I/O.
@Suite("Topic lifecycle state machine")
struct TopicLifecycleTests {
    typealias Lifecycle = TopicLifecycle<String>

    func record(_ name: String, id: String, partitions: Int = 2) -> TopicRecord {
        TopicRecord(
            name: name, topicID: id,
            partitions: (0..<partitions).map { _ in PartitionRecord(leaderID: 0, leaderEpoch: 0, replicas: [0]) },
            configs: [:])
    }

    func code<T>(_ result: Result<T, BrokerError>) -> Fjord_V1_ErrorCode? {
        if case .failure(let error) = result { return error.code }
        return nil
    }

    @Test func aCreatedTopicIsInvisibleUntilItsPartitionsAreOpen() throws {
        var topics = Lifecycle()
        #expect(topics.acquire("t", waiter: 1) == true)
        try topics.beginCreate(record("t", id: "a"))
        #expect(topics.phase(of: "t") == .creating)
        #expect(code(topics.partition(topic: "t", index: 0)) == .unknownTopicOrPartition)
        #expect(code(topics.record("t")) == .unknownTopicOrPartition)
        #expect(topics.liveRecords.isEmpty)
        #expect(topics.setPartition(.success("t-0"), topic: "t", topicID: "a", index: 0) == true)
        #expect(topics.setPartition(.failure(BrokerError(.storageError, "bad disk")), topic: "t", topicID: "a", index: 1) == true)
        try topics.finishCreate("t", topicID: "a")
        #expect(try topics.partition(topic: "t", index: 0).get() == "t-0")
        #expect(code(topics.partition(topic: "t", index: 1)) == .storageError)
        #expect(code(topics.partition(topic: "t", index: 2)) == .unknownTopicOrPartition)
        #expect(topics.liveRecords.map(\.topicID) == ["a"])
        #expect(topics.release("t") == nil)
        #expect(topics.phase(of: "t") == .live)
    }

    @Test func operationsOnOneNameQueueInArrivalOrderAndOtherNamesDoNotWait() {
        var topics = Lifecycle()
        #expect(topics.acquire("t", waiter: 1) == true)
        #expect(topics.acquire("t", waiter: 2) == false)
        #expect(topics.acquire("t", waiter: 3) == false)
        #expect(topics.acquire("u", waiter: 4) == true)
        #expect(topics.release("t") == 2)
        #expect(topics.release("t") == 3)
        #expect(topics.release("t") == nil)
        // Free again, and the entry of a name with no topic is gone.
        #expect(topics.entries["t"] == nil)
        #expect(topics.acquire("t", waiter: 5) == true)
    }

    @Test func aDeleteHidesTheTopicAtOnceAndHandsBackItsPartitions() throws {
        var topics = Lifecycle()
        _ = topics.acquire("t", waiter: 1)
        try topics.beginCreate(record("t", id: "a"))
        topics.setPartition(.success("a-0"), topic: "t", topicID: "a", index: 0)
        topics.setPartition(.success("a-1"), topic: "t", topicID: "a", index: 1)
        try topics.finishCreate("t", topicID: "a")
        _ = topics.release("t")

        _ = topics.acquire("t", waiter: 2)
        let (deleted, partitions) = try topics.beginDelete("t")
        #expect(deleted.topicID == "a")
        #expect(partitions.sorted() == ["a-0", "a-1"])
        #expect(topics.phase(of: "t") == .deleting)
        #expect(code(topics.partition(topic: "t", index: 0)) == .unknownTopicOrPartition)
        #expect(topics.partitionCount(topic: "t") == nil)
        // A create of the same name waits behind the delete.
        #expect(topics.acquire("t", waiter: 3) == false)
        // A late open of the deleted incarnation is refused (its caller closes the log).
        #expect(topics.setPartition(.success("late"), topic: "t", topicID: "a", index: 0) == false)
        topics.finishDelete("t")
        #expect(topics.release("t") == 3)
        try topics.beginCreate(record("t", id: "b", partitions: 1))
        #expect(topics.setPartition(.success("old"), topic: "t", topicID: "a", index: 0) == false)
        #expect(topics.setPartition(.success("b-0"), topic: "t", topicID: "b", index: 0) == true)
        try topics.finishCreate("t", topicID: "b")
        #expect(try topics.partition(topic: "t", index: 0).get() == "b-0")
        #expect(topics.allPartitions == ["b-0"])
    }

    @Test func createOfATakenNameAndDeleteOfAnAbsentOneFail() throws {
        var topics = Lifecycle()
        _ = topics.acquire("t", waiter: 1)
        try topics.beginCreate(record("t", id: "a"))
        try topics.finishCreate("t", topicID: "a")
        #expect(throws: BrokerError.self) { try topics.beginCreate(record("t", id: "b")) }
        #expect(topics.record("t").map(\.topicID) == .success("a"))
        #expect { _ = try topics.beginDelete("nope") } throws: { ($0 as? BrokerError)?.code == .unknownTopicOrPartition }
        // A create whose store write failed leaves the name free and hands back what it opened.
        _ = topics.acquire("u", waiter: 2)
        try topics.beginCreate(record("u", id: "c"))
        topics.setPartition(.success("c-0"), topic: "u", topicID: "c", index: 0)
        #expect(topics.abortCreate("u", topicID: "c") == ["c-0"])
        #expect(topics.phase(of: "u") == .absent)
        #expect(topics.release("u") == nil)
        #expect(topics.entries["u"] == nil)
    }

    @Test func addedPartitionsAreUnknownUntilOpenedAndAnAbortedDeleteRestoresTheTopic() throws {
        var topics = Lifecycle()
        _ = topics.acquire("t", waiter: 1)
        try topics.beginCreate(record("t", id: "a", partitions: 1))
        topics.setPartition(.success("a-0"), topic: "t", topicID: "a", index: 0)
        try topics.finishCreate("t", topicID: "a")
        try topics.update(record("t", id: "a", partitions: 3))
        #expect(topics.partitionCount(topic: "t") == 3)
        #expect(code(topics.partition(topic: "t", index: 2)) == .unknownTopicOrPartition)
        topics.setPartition(.success("a-2"), topic: "t", topicID: "a", index: 2)
        #expect(try topics.partition(topic: "t", index: 2).get() == "a-2")
        // An update for another incarnation is refused.
        #expect(throws: BrokerError.self) { try topics.update(record("t", id: "zzz", partitions: 4)) }
        _ = try topics.beginDelete("t")
        topics.abortDelete("t")
        #expect(try topics.partition(topic: "t", index: 0).get() == "a-0")
    }

    @Test func stoppingRefusesNewOperationsAndLateOpens() throws {
        var topics = Lifecycle()
        _ = topics.acquire("t", waiter: 1)
        try topics.beginCreate(record("t", id: "a", partitions: 1))
        topics.stop()
        #expect(topics.setPartition(.success("a-0"), topic: "t", topicID: "a", index: 0) == false)
        #expect { try topics.beginCreate(record("u", id: "b")) } throws: { ($0 as? BrokerError)?.code == .brokerShuttingDown }
    }
}
