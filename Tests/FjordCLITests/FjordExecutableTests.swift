import FjordRecords
import FjordStorage
import Foundation
import SystemPackage
import Testing

/// Smoke tests of the built `fjord` executable, run as a real process.
@Suite struct FjordExecutableTests {
    @Test func dumpPrintsBatchesRecordsAndIndexes() async throws {
        try await withTemporaryDirectory { directory in
            try await makeLog(in: directory, batches: 5)
            let plain = try runFjord(["log", "dump", directory.path])
            #expect(plain.status == 0)
            #expect(plain.output.contains("position=0 baseOffset=0 lastOffset=2 count=3"))
            #expect(plain.output.contains("crc=valid"))
            #expect(!plain.output.contains("INVALID"))
            #expect(plain.output.contains("batches=5 nextOffset=15"))

            let detailed = try runFjord(["log", "dump", "--records", "--indexes", directory.path])
            #expect(detailed.status == 0)
            #expect(detailed.output.contains("offset=4 timestamp=1700000000004 key=\"key-4\" value=\"value-4\" headers=[trace=\"t-4\"]"))
            #expect(detailed.output.contains("index:"))
            #expect(detailed.output.contains("timeindex:"))
        }
    }

    @Test func dumpReportsDamageWithExitStatusOne() async throws {
        try await withTemporaryDirectory { directory in
            try await makeLog(in: directory, batches: 3)
            let segment = directory.appendingPathComponent("00000000000000000000.log")
            var bytes = try Data(contentsOf: segment)
            bytes[BatchFraming.prefixSize + 60] ^= 0xFF  // inside the first batch's CRC-covered header
            try bytes.write(to: segment)
            let result = try runFjord(["log", "dump", segment.path])
            #expect(result.status == 1)
            #expect(result.output.contains("crc=INVALID"))

            try bytes.prefix(bytes.count - 10).write(to: segment)
            let truncated = try runFjord(["log", "dump", segment.path])
            #expect(truncated.status == 1)
            #expect(truncated.output.contains("TRUNCATED"))
        }
    }

    @Test func dumpOfMissingPathSaysWhatToPass() throws {
        let result = try runFjord(["log", "dump", "/nonexistent/fjord-dump-test"])
        #expect(result.status != 0)
        #expect(result.error.contains("does not exist; pass a partition directory or a .log segment file"))
    }

    @Test func benchLogPrintsOneJSONObject() async throws {
        try await withTemporaryDirectory { directory in
            let result = try runFjord([
                "bench", "log", "--records", "5000", "--record-size", "100", "--batch-bytes", "4096", "--json",
                "--directory", directory.path,
            ])
            #expect(result.status == 0, "\(result.error)")
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
            let records = try #require(object["records"] as? Int)
            #expect(records >= 5000)
            #expect((object["append_records_per_sec"] as? Double ?? 0) > 0)
            #expect((object["append_mb_per_sec"] as? Double ?? 0) > 0)
            #expect((object["read_gb_per_sec"] as? Double ?? 0) > 0)
            // The bench removes its log afterwards.
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
        }
    }
}

// MARK: - Support

struct ProcessResult {
    var status: Int32
    var output: String
    var error: String
}

/// The `fjord` executable built beside the test bundle.
func fjordExecutable() throws -> URL {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = directory.appendingPathComponent("fjord")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        directory = directory.deletingLastPathComponent()
    }
    let fallback = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug/fjord")
    guard FileManager.default.isExecutableFile(atPath: fallback.path) else {
        throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: "fjord executable (run `swift build` first)"])
    }
    return fallback
}

func runFjord(_ arguments: [String], input: String? = nil, environment: [String: String] = [:]) throws -> ProcessResult {
    let process = Process()
    process.executableURL = try fjordExecutable()
    process.arguments = arguments
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    let stdin = Pipe()
    process.standardInput = stdin
    try process.run()
    if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    try stdin.fileHandleForWriting.close()
    // Read before waiting so a large output cannot fill the pipe and block the child.
    let out = output.fileHandleForReading.readDataToEndOfFile()
    let err = error.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ProcessResult(
        status: process.terminationStatus, output: String(decoding: out, as: UTF8.self),
        error: String(decoding: err, as: UTF8.self))
}

func withTemporaryDirectory(_ body: (URL) async throws -> Void) async throws {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-cli-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: url) }
    try await body(url)
}

/// A closed log of `batches` batches of 3 records each, with keys, values, headers and timestamps.
func makeLog(in directory: URL, batches: Int) async throws {
    var configuration = LogConfiguration()
    configuration.indexIntervalBytes = 64
    let log = try await PartitionLog.open(directory: FilePath(directory.path), configuration: configuration)
    var offset = 0
    for _ in 0..<batches {
        var builder = RecordBatchBuilder()
        for _ in 0..<3 {
            builder.append(
                Record(
                    key: Array("key-\(offset)".utf8), value: Array("value-\(offset)".utf8),
                    headers: [RecordHeader(key: "trace", value: Array("t-\(offset)".utf8))],
                    timestamp: 1_700_000_000_000 + Int64(offset)))
            offset += 1
        }
        try await log.append(builder.build())
    }
    try await log.close()
}
