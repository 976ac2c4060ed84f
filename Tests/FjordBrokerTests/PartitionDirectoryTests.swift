@testable import FjordBroker
import FjordClient
import FjordProto
import Foundation
import Logging
import SystemPackage
import Testing

/// A partition directory belongs to one topic incarnation: a deletion cut short by a stop is
/// finished at the next start, and files of an earlier topic of the same name are never served.
@Suite struct PartitionDirectoryTests {
    @Test func aDirectoryOfAnotherIncarnationIsMovedAsideNotServed() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-dir-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let directory = FilePath(root).appending("orders-0")
        let logger = Logger(label: "test")

        try PartitionDirectory.claim(directory, topicID: "old-id", logger: logger)
        _ = FileManager.default.createFile(atPath: directory.appending("00000000000000000000.log").string, contents: Data([1, 2, 3]))
        try PartitionDirectory.claim(directory, topicID: "old-id", logger: logger)  // its own: kept
        #expect(FileManager.default.fileExists(atPath: directory.appending("00000000000000000000.log").string))

        try PartitionDirectory.claim(directory, topicID: "new-id", logger: logger)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.string) == ["topic-id"])
        #expect(try String(contentsOfFile: directory.appending("topic-id").string, encoding: .utf8) == "new-id\n")
        let aside = root + "/orders-0.old-id.stray"
        #expect(FileManager.default.fileExists(atPath: aside + "/00000000000000000000.log"))

        // A directory without a stamp (made before stamps existed) is adopted as it is.
        let legacy = FilePath(root).appending("legacy-0")
        try FileManager.default.createDirectory(atPath: legacy.string, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: legacy.appending("00000000000000000000.log").string, contents: Data())
        try PartitionDirectory.claim(legacy, topicID: "some-id", logger: logger)
        #expect(FileManager.default.fileExists(atPath: legacy.appending("00000000000000000000.log").string))
        #expect(try String(contentsOfFile: legacy.appending("topic-id").string, encoding: .utf8) == "some-id\n")
    }

    @Test func aDeleteInterruptedAfterItsRenameIsFinishedAtTheNextStart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-broker-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var topicID = ""
        try await withBroker(directory: directory) { broker in
            let connection = try await broker.connect()
            topicID = try await createTopic(connection, "doomed", partitions: 2).topicID
            _ = try await produce(connection, topic: "doomed", partition: 0, batches: [makeBatch(["old"])])
            try await connection.close()
        }
        // As if the broker stopped right after renaming one partition for deletion.
        let logs = directory + "/logs"
        #expect(rename(logs + "/doomed-0", logs + "/doomed-0.\(topicID).deleted") == 0)

        try await withBroker(directory: directory) { broker in
            let connection = try await broker.connect()
            let listed: Fjord_V1_ListTopicsResponse = try await connection.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            #expect(!listed.names.contains("doomed"))
            let left = try FileManager.default.contentsOfDirectory(atPath: logs)
            #expect(left.isEmpty, "\(left)")
            // The name is free, and a new topic under it starts empty.
            let again = try await createTopic(connection, "doomed", partitions: 1)
            #expect(again.topicID != topicID)
            let result = try await fetch(connection, topic: "doomed", partition: 0, offset: 0)
            #expect(result.error.code == .none)
            #expect(result.highWatermark == 0)
            try await connection.close()
        }
    }
}
