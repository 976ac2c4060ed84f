import ArgumentParser
import Dispatch
import FjordRecords
import FjordStorage
import Foundation
import Logging
import NIOCore
import Synchronization
import SystemPackage

/// `fjord bench log`: appends N records of S bytes in batches of B bytes to a partition log in a
/// directory, then reads the log end to end through zero-copy views.
struct BenchLogCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Benchmark the storage engine: append then read a partition log on local disk.",
        discussion: """
            The append phase keeps --in-flight appends outstanding (the broker pipelines produce
            requests the same way). MB/s counts payload bytes (records × record size, MB = 10^6 B);
            "log MB/s" counts the bytes written to segment files. The read phase walks the log from
            its first offset with reads of --read-bytes through the storage thread pool (the broker's path),
            one read prepared ahead while the current one is consumed,
            and by default reads every byte once through the memory map; --read-check crc checks
            every batch's CRC32C as a consumer would, --read-check none walks the headers only.

            --compare-dd first writes the same number of bytes with `dd if=/dev/zero bs=1M` (with
            conv=fdatasync for --durable) into the same directory and prints the ratio.

            Examples:
              fjord bench log --records 10000000 --record-size 100 --batch-bytes 16384 --compare-dd
              fjord bench log --record-size 1024 --batch-bytes 1048576 --durable --in-flight 64 --json
            """
    )

    @Option(help: "Directory to create the benchmark log in (a fresh subdirectory is used and removed).")
    var directory: String = FileManager.default.temporaryDirectory.path

    @Option(help: "Number of records to append.")
    var records: Int = 10_000_000

    @Option(help: "Bytes of each record's value.")
    var recordSize: Int = 100

    @Option(help: "Bytes per batch.")
    var batchBytes: Int = 16 * 1024

    @Option(help: "Appends outstanding at once.")
    var inFlight: Int = 64

    @Flag(help: "Acknowledge appends only after fsync (group commit).")
    var durable = false

    @Option(help: "Segment size in bytes.")
    var segmentBytes: Int = 1 << 30

    @Option(help: "Most bytes per read in the read phase.")
    var readBytes: Int = 1 << 20

    /// What the read phase does with each batch it reads.
    enum ReadCheck: String, ExpressibleByArgument, CaseIterable, Codable {
        /// Reads every byte once (as sending it to a socket or encrypting it would).
        case touch
        /// Checks every batch's CRC32C, as a consumer does.
        case crc
        /// Walks the batch headers only.
        case none
    }

    @Option(help: "Read phase: touch every byte, check every CRC32C, or walk headers only (touch|crc|none).")
    var readCheck: ReadCheck = .touch

    @Flag(help: "Also time dd writing the same bytes to the same directory.")
    var compareDd = false

    @Flag(help: "Skip the read phase.")
    var skipRead = false

    @Flag(help: "Keep the log directory afterwards.")
    var keep = false

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        guard records > 0, recordSize >= 0, inFlight > 0 else {
            throw ValidationError("--records and --in-flight must be positive, --record-size not negative")
        }
        guard batchBytes >= RecordBatchLayout.headerSize + recordSize + 8 else {
            throw ValidationError("--batch-bytes must hold at least one record (header 80 B + record)")
        }
    }

    func run() async throws {
        let root = URL(fileURLWithPath: directory).appendingPathComponent("fjord-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { if !keep { try? FileManager.default.removeItem(at: root) } }

        // One batch, appended over and over: the broker never re-encodes, so neither does the bench.
        var builder = RecordBatchBuilder(capacity: batchBytes)
        var value = [UInt8](repeating: 0, count: recordSize)
        for i in value.indices { value[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
        let now = PartitionLog.wallClockMilliseconds()
        while true {
            let before = builder.sizeInBytes
            builder.append(key: nil, value: value, timestamp: now)
            if builder.sizeInBytes > batchBytes && builder.recordCount > 1 {
                // Rebuild without the record that overflowed.
                let count = builder.recordCount - 1
                builder = RecordBatchBuilder(capacity: before)
                for _ in 0..<count { builder.append(key: nil, value: value, timestamp: now) }
                break
            }
            if builder.sizeInBytes > batchBytes { break }
        }
        let batch = builder.build()
        let perBatch = builder.recordCount
        let batches = (records + perBatch - 1) / perBatch
        let totalRecords = batches * perBatch
        let logBytes = batches * (batch.readableBytes + BatchFraming.prefixSize)

        var report = Report(
            records: totalRecords, recordSize: recordSize, batchBytes: batch.readableBytes, recordsPerBatch: perBatch,
            durable: durable, inFlight: inFlight, directory: root.path)

        if compareDd {
            report.ddMBPerSec = try runDD(in: root, bytes: logBytes)
        }

        var configuration = LogConfiguration()
        configuration.segmentBytes = segmentBytes
        configuration.maxBatchBytes = max(configuration.maxBatchBytes, batch.readableBytes)
        configuration.retention = .init(milliseconds: nil, bytes: nil)
        let log = try await PartitionLog.open(
            directory: FilePath(root.appendingPathComponent("bench-0").path), configuration: configuration,
            logger: Logger(label: "fjord.bench", factory: { _ in SwiftLogNoOpLogHandler() }))

        let durability: AppendDurability = durable ? .durable : .written
        let (appendSeconds, failures) = await onThread { () -> (Double, Int) in
            let window = DispatchSemaphore(value: inFlight)
            let group = DispatchGroup()
            let failures = Atomic<Int>(0)
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<batches {
                window.wait()
                group.enter()
                log.append(batch, durability: durability) { result in
                    if case .failure = result { failures.add(1, ordering: .relaxed) }
                    window.signal()
                    group.leave()
                }
            }
            group.wait()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            return (seconds, failures.load(ordering: .relaxed))
        }
        guard failures == 0 else {
            throw ValidationError("\(failures) appends failed; is the disk full?")
        }
        report.appendSeconds = appendSeconds
        report.appendRecordsPerSec = Double(totalRecords) / appendSeconds
        report.appendMBPerSec = Double(totalRecords * recordSize) / appendSeconds / 1e6
        report.appendLogMBPerSec = Double(logBytes) / appendSeconds / 1e6
        if let dd = report.ddMBPerSec { report.appendVsDD = report.appendLogMBPerSec! / dd }

        if !skipRead {
            let readBytes = self.readBytes
            let check = readCheck
            let end = log.logEndOffset
            var bytes = 0
            var count = 0
            var checksum: UInt64 = 0
            let start = DispatchTime.now().uptimeNanoseconds
            // The broker's path: reads run on the storage thread pool, which maps the pages in,
            // and the next read is prepared while the current bytes are consumed (one ahead).
            var pending: Task<LogReadResult, any Error>? = Task { [log] in
                try await log.read(from: log.logStartOffset, maxBytes: readBytes)
            }
            while let current = pending {
                let result = try await current.value
                let next = result.records.nextOffset
                pending = next < end && !result.records.isEmpty
                    ? Task { [log] in try await log.read(from: next, maxBytes: readBytes) } : nil
                let valid = result.records.withUnsafeBytes { raw in
                    var iterator = FramedBatchIterator(raw)
                    var valid = true
                    while let framed = iterator.next() {
                        count += Int(framed.batch.recordCount)
                        if check == .crc { valid = valid && framed.batch.isCRCValid }
                    }
                    if check == .touch { checksum ^= Self.touch(raw) }
                    return valid
                }
                guard valid else { throw ValidationError("a batch read back failed its CRC32C check") }
                bytes += result.records.count
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            guard count == totalRecords else {
                throw ValidationError("read \(count) records back, appended \(totalRecords)")
            }
            report.readSeconds = seconds
            report.readGBPerSec = Double(bytes) / seconds / 1e9
            report.readRecordsPerSec = Double(count) / seconds
            report.readCheck = check.rawValue
            withExtendedLifetime(checksum) {}
        }
        try await log.close()

        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.text)
        }
    }

    /// XORs the bytes 8 at a time: reads every byte once, at memory speed.
    static func touch(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var sum: UInt64 = 0
        let words = bytes.count / 8
        for i in 0..<words { sum ^= bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) }
        for i in (words * 8)..<bytes.count { sum ^= UInt64(bytes[i]) }
        return sum
    }

    /// Times dd writing `bytes` (rounded up to whole MiB) into `directory`; returns MB/s.
    private func runDD(in directory: URL, bytes: Int) throws -> Double {
        let target = directory.appendingPathComponent("dd.bench")
        defer { try? FileManager.default.removeItem(at: target) }
        let count = (bytes + (1 << 20) - 1) >> 20
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/dd")
        process.arguments = ["if=/dev/zero", "of=\(target.path)", "bs=1M", "count=\(count)"] + (durable ? ["conv=fdatasync"] : [])
        process.standardError = FileHandle.nullDevice
        let start = DispatchTime.now().uptimeNanoseconds
        try process.run()
        process.waitUntilExit()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        guard process.terminationStatus == 0 else { throw ValidationError("dd failed with status \(process.terminationStatus)") }
        return Double(count << 20) / seconds / 1e6
    }

    /// Runs blocking work on a dedicated thread, off Swift's cooperative pool.
    private func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    private func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body()) }.start()
        }
    }
}

/// The figures of one `bench log` run.
struct Report: Codable {
    var records: Int
    var recordSize: Int
    var batchBytes: Int
    var recordsPerBatch: Int
    var durable: Bool
    var inFlight: Int
    var directory: String
    var appendSeconds: Double?
    var appendRecordsPerSec: Double?
    var appendMBPerSec: Double?
    var appendLogMBPerSec: Double?
    var ddMBPerSec: Double?
    var appendVsDD: Double?
    var readSeconds: Double?
    var readGBPerSec: Double?
    var readRecordsPerSec: Double?
    var readCheck = "touch"

    var text: String {
        func f(_ value: Double?, _ digits: Int = 1) -> String { value.map { String(format: "%.\(digits)f", $0) } ?? "-" }
        var lines = [
            "log bench: \(records) records × \(recordSize) B in \(batchBytes) B batches (\(recordsPerBatch) records/batch), \(durable ? "durable (fsync)" : "page cache"), \(inFlight) in flight",
            "  append: \(f(appendRecordsPerSec.map { $0 / 1e6 }, 2)) M records/s, \(f(appendMBPerSec)) MB/s payload, \(f(appendLogMBPerSec)) MB/s to the log (\(f(appendSeconds, 3)) s)",
        ]
        if let dd = ddMBPerSec {
            lines.append("  dd bs=1M\(durable ? " conv=fdatasync" : ""): \(f(dd)) MB/s; append/dd = \(f(appendVsDD, 3))")
        }
        if let read = readGBPerSec {
            lines.append("  read:   \(f(read, 2)) GB/s of batch bytes\(readCheck == "crc" ? " (CRC32C checked)" : readCheck == "touch" ? " (every byte read)" : " (headers only)"), \(f(readRecordsPerSec.map { $0 / 1e6 }, 1)) M records/s (\(f(readSeconds, 3)) s)")
        }
        return lines.joined(separator: "\n")
    }
}
