import ArgumentParser
import FjordProto
import FjordRecords
import Foundation
import SwiftProtobuf

/// `fjord log dump`: prints segments, batches, offsets, timestamps and CRC status, like Kafka's
/// `kafka-dump-log`. Reads files only; never modifies or recovers the log.
struct LogDumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Print the segments and batches of a partition log directory or segment file.",
        discussion: """
            Reads the files read-only (it never repairs anything), so it is safe on a log that
            fails to open. Each batch line shows its file position, offsets, record count,
            timestamps, size and whether its CRC32C is valid. The exit status is 1 when any batch
            is damaged or a segment ends inside a batch.

            Examples:
              fjord log dump /var/lib/fjord/data/orders-0
              fjord log dump --records --max-batches 10 /var/lib/fjord/data/orders-0/00000000000000000000.log
              fjord log dump --indexes /var/lib/fjord/data/orders-0
            """
    )

    @Argument(help: "A partition log directory, or one segment .log file.")
    var path: String

    @Flag(help: "Also print every record: offset, timestamp, key, value and headers.")
    var records = false

    @Flag(help: "Also print the offset and time index entries of each segment.")
    var indexes = false

    @Option(help: "Stop after this many batches per segment.")
    var maxBatches: Int?

    mutating func run() throws {
        let files = try segmentFiles()
        var damaged = false
        for file in files {
            damaged = try dump(file) || damaged
        }
        if damaged { throw ExitCode(1) }
    }

    private func segmentFiles() throws -> [URL] {
        let url = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ValidationError("\(path) does not exist; pass a partition directory or a .log segment file")
        }
        guard isDirectory.boolValue else { return [url] }
        let names = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".log") }.sorted()
        if names.isEmpty { throw ValidationError("\(path) holds no .log segment files") }
        return names.map { url.appendingPathComponent($0) }
    }

    /// Dumps one segment; returns whether it is damaged.
    private func dump(_ url: URL) throws -> Bool {
        let data = try Data(contentsOf: url, options: .alwaysMapped)
        print("segment \(url.path) (\(data.count) bytes)")
        var damaged = false
        data.withUnsafeBytes { bytes in
            var iterator = FramedBatchIterator(bytes)
            var shown = 0
            var expected: Int64?
            while let framed = iterator.next() {
                let batch = framed.batch
                let header = batch.header
                let crcOK = batch.isCRCValid
                let layoutOK = RecordBatchLayout.tags.allSatisfy { batch.bytes[$0.position] == $0.tag }
                let contiguous = expected.map { $0 == header.baseOffset } ?? true
                if !crcOK || !layoutOK { damaged = true }
                if shown < (maxBatches ?? .max) {
                    var line = "  position=\(framed.position) baseOffset=\(header.baseOffset) lastOffset=\(header.lastOffset)"
                    line += " count=\(header.recordCount) size=\(batch.bytes.count)"
                    line += " firstTimestamp=\(header.firstTimestamp) maxTimestamp=\(header.maxTimestamp)"
                    line += " appendTime=\(header.logAppendTime) leaderEpoch=\(header.partitionLeaderEpoch)"
                    line += " producer=\(header.producerID)/\(header.producerEpoch)/\(header.baseSequence)"
                    line += " crc=\(crcOK ? "valid" : "INVALID") \(layoutOK ? "" : "layout=INVALID ")"
                    if !contiguous { line += " GAP(expected \(expected!))" }
                    print(line.trimmingCharacters(in: .whitespaces))
                    if records && crcOK && layoutOK { printRecords(batch) }
                }
                shown += 1
                expected = header.lastOffset &+ 1
            }
            switch iterator.stopReason {
            case .truncated(let position):
                damaged = true
                print("  TRUNCATED: the file ends inside a batch at position \(position)")
            case .malformed(let position):
                damaged = true
                print("  MALFORMED: no batch frame at position \(position) (\(data.count - position) bytes not shown)")
            default:
                break
            }
            print("  batches=\(shown) nextOffset=\(expected.map(String.init) ?? "none")")
        }
        if indexes { try dumpIndexes(of: url) }
        return damaged
    }

    private func printRecords(_ batch: RecordBatchView) {
        guard let decoded = try? Fjord_V1_RecordBatch(serializedBytes: Array(batch.bytes)) else {
            print("    (records do not decode as fjord.v1.RecordBatch)")
            return
        }
        for (i, record) in decoded.records.enumerated() {
            var line = "    offset=\(Int64(decoded.baseOffset) + Int64(i))"
            line += " timestamp=\(decoded.firstTimestamp + record.timestampDelta)"
            line += " key=\(record.hasKey ? Self.show(record.key) : "null")"
            line += " value=\(record.hasValue ? Self.show(record.value) : "null")"
            if !record.headers.isEmpty {
                line += " headers=[" + record.headers.map { "\($0.key)=\($0.hasValue ? Self.show($0.value) : "null")" }.joined(separator: ", ") + "]"
            }
            print(line)
        }
    }

    /// Printable UTF-8 as a quoted string, anything else as hex (long values shortened).
    static func show(_ bytes: Data) -> String {
        if let text = String(data: bytes, encoding: .utf8), text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) {
            return text.count > 64 ? "\"\(text.prefix(64))…\" (\(bytes.count) bytes)" : "\"\(text)\""
        }
        let hex = bytes.prefix(32).map { String(format: "%02x", $0) }.joined()
        return bytes.count > 32 ? "0x\(hex)… (\(bytes.count) bytes)" : "0x\(hex)"
    }

    private func dumpIndexes(of url: URL) throws {
        let stem = url.deletingPathExtension()
        let base = Int64(stem.lastPathComponent) ?? 0
        for (suffix, size) in [("index", 8), ("timeindex", 12)] {
            let indexURL = stem.appendingPathExtension(suffix)
            guard let data = try? Data(contentsOf: indexURL) else {
                print("  \(suffix): missing")
                continue
            }
            print("  \(suffix): \(data.count / size) entries\(data.count % size == 0 ? "" : " (TORN: \(data.count % size) trailing bytes)")")
            data.withUnsafeBytes { raw in
                for i in 0..<(data.count / size) {
                    if size == 8 {
                        let relative = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt32.self))
                        let position = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8 + 4, as: UInt32.self))
                        print("    offset=\(base + Int64(relative)) position=\(position)")
                    } else {
                        let timestamp = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 12, as: Int64.self))
                        let relative = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 12 + 8, as: UInt32.self))
                        print("    timestamp=\(timestamp) offset=\(base + Int64(relative))")
                    }
                }
            }
        }
    }
}
