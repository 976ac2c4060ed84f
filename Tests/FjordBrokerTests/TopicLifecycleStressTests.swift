import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import Foundation
import InMemoryLogging
import Logging
import NIOCore
import SwiftProtobuf
import Testing

/// Clients racing topic administration on the same few names while producing and fetching:
/// every acknowledged record of a surviving topic's current incarnation is served, the broker
/// logs no warning or error, only the documented error codes come back, and no descriptor or
/// mapping of a deleted file stays open.
///
/// `FJORD_STRESS_SCALE=n` multiplies the operations per client (default 1: 8 × 500 racing
/// everything, then 8 × 100 without deletes);
/// `FJORD_STRESS_SEED=n` picks another sequence.
@Suite("Topic lifecycle under concurrency", .timeLimit(.minutes(20)))
struct TopicLifecycleStressTests {
    static let names = ["alpha", "beta", "gamma"]
    static let clients = 8
    static let operationsPerClient = 500

    struct Ack: Sendable {
        var topic: String
        var partition: UInt32
        var baseOffset: Int64
        var values: [String]
        var sentAt: ContinuousClock.Instant
    }

    struct Created: Sendable {
        var topicID: String
        var completedAt: ContinuousClock.Instant
    }

    struct ClientResult: Sendable {
        var acks: [Ack] = []
        var created: [Created] = []
        var sentValues: Set<String> = []
        var errors: [Fjord_V1_ErrorCode: Int] = [:]
        var successes: [String: Int] = [:]
        var unexpected: [String] = []
    }

    @Test func eightClientsRaceCreateDeleteAddPartitionsAlterProduceAndFetch() async throws {
        let environment = ProcessInfo.processInfo.environment
        let scale = max(1, Int(environment["FJORD_STRESS_SCALE"] ?? "") ?? 1)
        let seed = UInt64(environment["FJORD_STRESS_SEED"] ?? "") ?? 0x11FE_C7C1E
        let operations = Self.operationsPerClient * scale
        let logs = InMemoryLogHandler()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-stress-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = makeConfiguration(directory: directory) { $0.storageThreads = 2 }
        let logger = Logger(label: "test.stress") { _ in logs }
        let broker = Broker(configuration: configuration, logger: logger)
        try await broker.start()
        let test = TestBroker(broker: broker, directory: directory)
        let started = ContinuousClock.now
        do {
            // Phase 1: everything races, deletes and creates included. Phase 2: every name exists and
            // is never deleted again, while produce races adding partitions and reconfiguration, so
            // a large share of the acknowledged records belongs to the surviving incarnations.
            var results = try await Self.runClients(operations: operations, seed: seed, deletes: true, broker: test)
            let setup = try await test.connect()
            for name in Self.names {
                do {
                    let info = try await createTopic(setup, name, partitions: 3)
                    results.append(ClientResult(created: [Created(topicID: info.topicID, completedAt: .now)]))
                } catch let error as FjordClientError where error.code == .topicAlreadyExists {}
            }
            try await setup.close()
            results += try await Self.runClients(operations: operations / 5, seed: seed &+ 1, deletes: false, broker: test)
            let elapsed = ContinuousClock.now - started
            let checked = try await verify(results, broker: test)
            var errors: [Fjord_V1_ErrorCode: Int] = [:]
            var successes: [String: Int] = [:]
            for result in results {
                errors.merge(result.errors, uniquingKeysWith: +)
                successes.merge(result.successes, uniquingKeysWith: +)
                for problem in result.unexpected { Issue.record("\(problem)") }
            }
            let leaks = try await Self.openDeletedFiles(under: directory)
            #expect(leaks.isEmpty, "descriptors or mappings of deleted files: \(leaks.prefix(10))")
            let complaints = logs.entries.filter { $0.level >= .warning }
            #expect(complaints.isEmpty, "the broker logged: \(complaints.prefix(10).map { "[\($0.level)] \($0.message) \($0.metadata)" })")
            // The figures for the notes (visible with `swift test --filter TopicLifecycleStress`).
            print(
                "stress: scale \(scale), \(Self.clients * (operations + operations / 5)) operations in \(elapsed), successes \(successes.sorted { $0.key < $1.key }), errors \(errors.map { "\($0.key.name)=\($0.value)" }.sorted()), \(checked) acknowledged records checked, \(leaks.count) open descriptors of deleted files"
            )
            #expect(checked > 0)
        } catch {
            await broker.shutdown()
            throw error
        }
        await broker.shutdown()
    }

    /// Runs every client at once and returns their results.
    static func runClients(operations: Int, seed: UInt64, deletes: Bool, broker: TestBroker) async throws -> [ClientResult] {
        try await withThrowingTaskGroup(of: ClientResult.self) { group in
            for client in 0..<clients {
                group.addTask {
                    try await runClient(client, operations: operations, seed: seed, deletes: deletes, broker: broker)
                }
            }
            var all: [ClientResult] = []
            for try await result in group { all.append(result) }
            return all
        }
    }

    /// One client's random sequence of operations on the shared names; without `deletes`, no
    /// create or delete (their share goes to produce).
    static func runClient(
        _ client: Int, operations: Int, seed: UInt64, deletes: Bool, broker: TestBroker
    ) async throws -> ClientResult {
        var random = TestRandom(seed: seed &+ UInt64(client) &* 0x9E37_79B9)
        var result = ClientResult()
        let connection = try await broker.connect()
        var sequence = 0
        for _ in 0..<operations {
            let name = names[random.next(upTo: names.count)]
            let roll = deletes ? random.next(upTo: 100) : 20 + random.next(upTo: 80)
            do {
                switch roll {
                case 0..<14:
                    let partitions = UInt32(1 + random.next(upTo: 3))
                    let info = try await createTopic(connection, name, partitions: partitions)
                    result.created.append(Created(topicID: info.topicID, completedAt: .now))
                    result.successes["create", default: 0] += 1
                case 14..<20:
                    let _: Fjord_V1_DeleteTopicResponse = try await connection.unary(
                        .deleteTopic, Fjord_V1_DeleteTopicRequest.with { $0.name = name })
                    result.successes["delete", default: 0] += 1
                case 20..<28:
                    let total = UInt32(2 + random.next(upTo: 4))
                    let _: Fjord_V1_CreatePartitionsResponse = try await connection.unary(
                        .createPartitions,
                        Fjord_V1_CreatePartitionsRequest.with {
                            $0.name = name
                            $0.totalPartitions = total
                        })
                    result.successes["add-partitions", default: 0] += 1
                case 28..<34:
                    let settings = [
                        ["segment.bytes": "4096"], ["flush.ms": "0"], ["retention.ms": "3600000"], ["flush.ms": "5"],
                    ]
                    let set = settings[random.next(upTo: settings.count)]
                    let _: Fjord_V1_AlterTopicConfigResponse = try await connection.unary(
                        .alterTopicConfig,
                        Fjord_V1_AlterTopicConfigRequest.with {
                            $0.name = name
                            $0.set = set
                            $0.remove = random.next(upTo: 2) == 0 ? ["segment.bytes"] : []
                        })
                    result.successes["alter", default: 0] += 1
                case 34..<92:
                    let partition = UInt32(random.next(upTo: 3))
                    let count = 1 + random.next(upTo: 3)
                    let values = (0..<count).map { "c\(client)-\(deletes ? "a" : "b")\(sequence)-\($0)" }
                    sequence += 1
                    result.sentValues.formUnion(values)
                    let sentAt = ContinuousClock.now
                    let acks = try await produce(connection, topic: name, partition: partition, batches: [makeBatch(values, timestamp: now())])
                    guard let ack = acks.first else {
                        result.unexpected.append("produce to \(name)-\(partition) got no answer")
                        continue
                    }
                    if ack.hasError {
                        result.errors[ack.error.code, default: 0] += 1
                        if !Self.expected.contains(ack.error.code) {
                            result.unexpected.append("produce to \(name)-\(partition): \(ack.error.code.name) \(ack.error.message)")
                        }
                    } else {
                        result.acks.append(
                            Ack(topic: name, partition: partition, baseOffset: ack.baseOffset, values: values, sentAt: sentAt))
                        result.successes["produce", default: 0] += 1
                    }
                default:
                    let fetched = try await fetch(connection, topic: name, partition: UInt32(random.next(upTo: 3)), offset: 0)
                    if fetched.hasError {
                        result.errors[fetched.error.code, default: 0] += 1
                        if !Self.expected.contains(fetched.error.code) {
                            result.unexpected.append("fetch from \(name): \(fetched.error.code.name) \(fetched.error.message)")
                        }
                    } else {
                        result.successes["fetch", default: 0] += 1
                    }
                }
            } catch let error as FjordClientError {
                result.errors[error.code, default: 0] += 1
                if !Self.expected.contains(error.code) {
                    result.unexpected.append("operation \(roll) on \(name): \(error.code.name) \(error.message)")
                }
            }
        }
        // Last, every client produces to every name: what survives must serve these too.
        for name in names {
            for partition in UInt32(0)..<3 {
                let values = (0..<3).map { "c\(client)-\(deletes ? "a" : "b")-final-\(name)-\(partition)-\($0)" }
                result.sentValues.formUnion(values)
                let sentAt = ContinuousClock.now
                let acks = try await produce(connection, topic: name, partition: partition, batches: [makeBatch(values, timestamp: now())])
                guard let ack = acks.first, !ack.hasError else {
                    if let ack = acks.first, !Self.expected.contains(ack.error.code) {
                        result.unexpected.append("final produce to \(name)-\(partition): \(ack.error.code.name) \(ack.error.message)")
                    }
                    continue
                }
                result.acks.append(Ack(topic: name, partition: partition, baseOffset: ack.baseOffset, values: values, sentAt: sentAt))
            }
        }
        try await connection.close()
        return result
    }

    /// Now, in ms: records stamped with the present stay clear of `retention.ms` during the run.
    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The codes the races may produce; STORAGE_ERROR (a half-deleted directory) is not one.
    static let expected: Set<Fjord_V1_ErrorCode> = [
        .topicAlreadyExists, .unknownTopicOrPartition, .invalidPartitions, .notLeader,
    ]

    /// Checks every acknowledged record sent after the surviving incarnation of its topic was
    /// created; returns how many records were checked.
    func verify(_ results: [ClientResult], broker: TestBroker) async throws -> Int {
        let connection = try await broker.connect()
        let created = Dictionary(results.flatMap(\.created).map { ($0.topicID, $0.completedAt) }) { first, _ in first }
        let sent = results.reduce(into: Set<String>()) { $0.formUnion($1.sentValues) }
        var checked = 0
        for name in Self.names {
            let described: Fjord_V1_DescribeTopicResponse
            do {
                described = try await connection.unary(.describeTopic, Fjord_V1_DescribeTopicRequest.with { $0.name = name })
            } catch let error as FjordClientError where error.code == .unknownTopicOrPartition {
                continue  // deleted last
            }
            let topic = described.topic
            let createdAt = try #require(created[topic.topicID], "topic \(name) has id \(topic.topicID), which no create returned")
            // Every record of every partition, by offset.
            var stored: [UInt32: [Int64: String]] = [:]
            for partition in topic.partitions {
                #expect(partition.leaderID >= 0, "\(name)-\(partition.partition) is offline")
                var offset = partition.logStartOffset
                var byOffset: [Int64: String] = [:]
                while offset < partition.highWatermark {
                    let result = try await fetch(connection, topic: name, partition: partition.partition, offset: offset)
                    #expect(!result.hasError, "\(name)-\(partition.partition): \(result.error.message)")
                    guard !result.hasError, !result.records.batches.isEmpty else { break }
                    for batch in result.records.batches {
                        for (index, record) in batch.records.enumerated() {
                            let value = String(decoding: record.value, as: UTF8.self)
                            #expect(sent.contains(value), "\(name)-\(partition.partition) holds \(value), which no client sent")
                            byOffset[Int64(batch.baseOffset) + Int64(index)] = value
                        }
                        offset = Int64(batch.baseOffset) + Int64(batch.records.count)
                    }
                }
                stored[partition.partition] = byOffset
            }
            for ack in results.flatMap(\.acks) where ack.topic == name && ack.sentAt > createdAt {
                for (index, value) in ack.values.enumerated() {
                    let offset = ack.baseOffset + Int64(index)
                    #expect(
                        stored[ack.partition]?[offset] == value,
                        "\(name)-\(ack.partition) offset \(offset): acknowledged \(value), stored \(stored[ack.partition]?[offset] ?? "nothing")")
                    checked += 1
                }
            }
        }
        try await connection.close()
        return checked
    }

    /// Descriptors (`/proc/self/fd`) and mappings (`/proc/self/maps`) of files under `directory`
    /// that were deleted or renamed for deletion. Released buffers are unmapped on a background
    /// queue, so this waits up to five seconds for them to go.
    static func openDeletedFiles(under directory: String) async throws -> [String] {
        var leaks: [String] = []
        for _ in 0..<50 {
            leaks = []
            let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
            for descriptor in descriptors {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(descriptor)"),
                    target.contains(directory)
                else { continue }
                let path = target.hasSuffix(" (deleted)") ? String(target.dropLast(" (deleted)".count)) : target
                if target.hasSuffix(" (deleted)") || target.contains(".deleted") || !FileManager.default.fileExists(atPath: path) {
                    leaks.append("fd \(descriptor) -> \(target)")
                }
            }
            let maps = (try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8)) ?? ""
            for line in maps.split(separator: "\n") where line.contains(directory) && (line.contains("(deleted)") || line.contains(".deleted")) {
                leaks.append("mapping \(line)")
            }
            if leaks.isEmpty { return [] }
            try await Task.sleep(for: .milliseconds(100))
        }
        return leaks
    }
}

