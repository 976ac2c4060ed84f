#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FjordProto
import Foundation
public import NIOPosix
import Synchronization
public import SystemPackage

/// The single-node ``MetadataStore``: topics and ACLs in a JSON file, rewritten atomically (write a
/// temporary file, fsync, rename, fsync the directory) on every change. File I/O runs on the
/// thread pool, never on the caller's thread.
public final class LocalMetadataStore: MetadataStore {
    /// The state persisted in `metadata.json`.
    struct Snapshot: Codable {
        /// Format version of the file.
        var version: Int = 1
        var clusterID: String
        var topics: [String: TopicRecord]
        /// The first idempotent-producer id not yet reserved (absent in files written before ids existed).
        var nextProducerID: Int64?
        /// Access control entries (absent in files written before ACLs existed).
        var acls: [AccessControlEntry]?
        /// Raised on every change of ``acls``.
        var aclVersion: UInt64?
    }

    public let clusterID: String
    private let file: FilePath
    private let threadPool: NIOThreadPool
    private let state: Mutex<Snapshot>
    /// Serializes writers so the file always holds the latest snapshot.
    private let writeLock = Mutex(())

    private init(file: FilePath, snapshot: Snapshot, threadPool: NIOThreadPool) {
        self.file = file
        self.clusterID = snapshot.clusterID
        self.state = Mutex(snapshot)
        self.threadPool = threadPool
    }

    /// Opens the store in `directory` (creating `metadata.json` with a new cluster id on first use).
    public static func open(directory: FilePath, threadPool: NIOThreadPool) async throws(BrokerError) -> LocalMetadataStore {
        let file = directory.appending("metadata.json")
        let snapshot = try await onPool(threadPool) { () throws(BrokerError) -> Snapshot in
            if let data = FileManager.default.contents(atPath: file.string) {
                do {
                    let snapshot = try JSONDecoder().decode(Snapshot.self, from: data)
                    guard snapshot.version == 1 else {
                        throw BrokerError(.storageError, "\(file) has format version \(snapshot.version); this broker reads version 1")
                    }
                    return snapshot
                } catch let error as BrokerError {
                    throw error
                } catch {
                    throw BrokerError(.storageError, "\(file) is not valid metadata: \(error)")
                }
            }
            let snapshot = Snapshot(clusterID: UUID().uuidString.lowercased(), topics: [:])
            try write(snapshot, to: file)
            return snapshot
        }
        return LocalMetadataStore(file: file, snapshot: snapshot, threadPool: threadPool)
    }

    public func topics() async throws(BrokerError) -> [TopicRecord] {
        state.withLock { $0.topics.values.sorted { $0.name < $1.name } }
    }

    public func create(_ topic: TopicRecord) async throws(BrokerError) {
        try await change { snapshot throws(BrokerError) in
            guard snapshot.topics[topic.name] == nil else {
                throw BrokerError(.topicAlreadyExists, "a topic named \"\(topic.name)\" already exists")
            }
            snapshot.topics[topic.name] = topic
        }
    }

    public func update(_ topic: TopicRecord) async throws(BrokerError) {
        try await change { snapshot throws(BrokerError) in
            guard snapshot.topics[topic.name] != nil else { throw Self.unknown(topic.name) }
            snapshot.topics[topic.name] = topic
        }
    }

    public func delete(topic name: String) async throws(BrokerError) -> TopicRecord {
        let deleted = try await change { snapshot throws(BrokerError) -> TopicRecord in
            guard let topic = snapshot.topics.removeValue(forKey: name) else { throw Self.unknown(name) }
            return topic
        }
        return deleted
    }

    public func reserveProducerIDs(count: Int) async throws(BrokerError) -> Range<Int64> {
        try await change { snapshot throws(BrokerError) -> Range<Int64> in
            // Ids start at 1, so that 0 (the proto3 default) is never a producer's id.
            let first = max(snapshot.nextProducerID ?? 1, 1)
            snapshot.nextProducerID = first + Int64(count)
            return first..<first + Int64(count)
        }
    }

    public func accessControlEntries() async throws(BrokerError) -> (version: UInt64, entries: [AccessControlEntry]) {
        state.withLock { ($0.aclVersion ?? 0, $0.acls ?? []) }
    }

    public func changeAccessControlEntries<T: Sendable>(
        _ change: @escaping @Sendable (inout [AccessControlEntry]) throws(BrokerError) -> T
    ) async throws(BrokerError) -> (result: T, version: UInt64) {
        try await self.change { snapshot throws(BrokerError) -> (result: T, version: UInt64) in
            var entries = snapshot.acls ?? []
            let result = try change(&entries)
            snapshot.acls = entries
            snapshot.aclVersion = (snapshot.aclVersion ?? 0) + 1
            return (result, snapshot.aclVersion!)
        }
    }

    private static func unknown(_ name: String) -> BrokerError {
        BrokerError(.unknownTopicOrPartition, "there is no topic named \"\(name)\"")
    }

    /// Applies `body` and persists the result; the in-memory state changes only once the file is written.
    @discardableResult
    private func change<T: Sendable>(_ body: @escaping @Sendable (inout Snapshot) throws(BrokerError) -> T) async throws(BrokerError) -> T {
        let file = self.file
        return try await Self.onPool(threadPool) { [self] () throws(BrokerError) -> T in
            try writeLock.withLock { _ throws(BrokerError) -> T in
                var snapshot = state.withLock { $0 }
                let result = try body(&snapshot)
                try Self.write(snapshot, to: file)
                state.withLock { $0 = snapshot }
                return result
            }
        }
    }

    private static func write(_ snapshot: Snapshot, to file: FilePath) throws(BrokerError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let temporary = FilePath(file.string + ".tmp")
        do {
            let data = try encoder.encode(snapshot)
            let descriptor = try FileDescriptor.open(
                temporary, .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite])
            try descriptor.closeAfter {
                _ = try descriptor.writeAll(data)
                guard fsync(descriptor.rawValue) == 0 else { throw Errno(rawValue: errno) }
            }
            guard rename(temporary.string, file.string) == 0 else { throw Errno(rawValue: errno) }
            if let directory = try? FileDescriptor.open(file.removingLastComponent(), .readOnly) {
                _ = fsync(directory.rawValue)
                try? directory.close()
            }
        } catch let error as Errno {
            let code: Fjord_V1_ErrorCode = error == .noSpace ? .diskFull : .storageError
            throw BrokerError(code, "writing \(file) failed: \(error)")
        } catch {
            throw BrokerError(.storageError, "writing \(file) failed: \(error)")
        }
    }

    static func onPool<T: Sendable>(
        _ pool: NIOThreadPool, _ body: @escaping @Sendable () throws(BrokerError) -> T
    ) async throws(BrokerError) -> T {
        do {
            return try await pool.runIfActive { try body() }
        } catch let error as BrokerError {
            throw error
        } catch {
            throw BrokerError(.brokerShuttingDown, "the storage thread pool has stopped: \(error)")
        }
    }
}
