import FjordRecords
import Foundation
import Testing

/// Damage to a stopped broker's files, then a restart of the real `fjord serve` process: the
/// damaged data is never served, consumers get a non-retriable error naming it, the broker logs
/// it, and `fjord log verify` / `fjord log repair` find and repair it.
@Suite struct DamagedLogTests {
    @Test func damagedAndShortenedLogsAreReportedNeverServedAndRepairable() async throws {
        try await withTemporaryDirectory { directory in
            let data = directory.appendingPathComponent("data")
            let lines = (0..<6000).map { i in "k\(i):" + "value-\(String(format: "%05d", i))-" + String(repeating: "x", count: 80) }
            try await withServeProcess(dataDirectory: data) { broker in
                let create = try runFjord(
                    ["topics", "create", "t", "--partitions", "2", "--config", "segment.bytes=65536"] + broker.flags)
                #expect(create.status == 0, "\(create.error)")
                let produced = try runFjord(
                    ["produce", "t", "--key-separator", ":", "--acks", "durable"] + broker.flags,
                    input: lines.joined(separator: "\n") + "\n")
                #expect(produced.status == 0, "\(produced.error)")
            }  // SIGTERM: a clean stop

            let logs = data.appendingPathComponent("logs")
            let damagedDirectory = logs.appendingPathComponent("t-0")
            let shortenedDirectory = logs.appendingPathComponent("t-1")
            let segments0 = try segmentFiles(damagedDirectory)
            let segments1 = try segmentFiles(shortenedDirectory)
            try #require(segments0.count >= 3 && segments1.count >= 2)

            // Partition 0: a flipped bit in the records of the last batch of an old segment (not the first).
            let damagedSegment = segments0[segments0.count - 2]
            var bytes = try Data(contentsOf: damagedSegment)
            let frames = framePositions(bytes)
            let target = frames.count - 1
            bytes[frames[target] + BatchFraming.prefixSize + RecordBatchLayout.headerSize + 20] ^= 0x08
            try bytes.write(to: damagedSegment)
            let servable0 = try firstOffset(ofFrame: target, in: bytes)
            #expect(servable0 > 0)
            // Partition 1: its last segment cut exactly at its last batch boundary.
            let last = try #require(segments1.last)
            let lastBytes = try Data(contentsOf: last)
            let lastFrames = framePositions(lastBytes)
            try lastBytes.prefix(lastFrames[lastFrames.count - 1]).write(to: last)

            let verify = try runFjord(["log", "verify", damagedDirectory.path, shortenedDirectory.path])
            #expect(verify.status == 1)
            #expect(verify.output.contains("DAMAGED \(damagedSegment.path) at byte \(frames[target])"), "\(verify.output)")
            #expect(verify.output.contains("lost tail"))

            let brokerLog = directory.appendingPathComponent("serve.log")
            try await withServeProcess(dataDirectory: data, logFile: brokerLog) { broker in
                let consumed = try runFjord(
                    ["consume", "t", "--partition", "0", "--from-beginning", "--timeout-ms", "5000"] + broker.flags)
                #expect(consumed.status != 0)
                #expect(consumed.error.contains("CORRUPT_LOG"), "\(consumed.error)")
                #expect(consumed.error.contains(damagedSegment.lastPathComponent))
                // Whatever was served came before the damaged batch, unchanged.
                let served = consumed.output.split(separator: "\n").map(String.init)
                #expect(served.count <= servable0)
                let values = Set(lines.map { String($0.drop { $0 != ":" }.dropFirst()) })
                #expect(served.allSatisfy { values.contains($0) })

                let shortened = try runFjord(
                    ["consume", "t", "--partition", "1", "--from-beginning", "--timeout-ms", "5000"] + broker.flags)
                #expect(shortened.status != 0)
                #expect(shortened.error.contains("LOG_TAIL_LOST"), "\(shortened.error)")
            }
            let log = try String(contentsOf: brokerLog, encoding: .utf8)
            #expect(log.contains("damaged log data"))
            #expect(log.contains(damagedSegment.path))

            // The operator repairs both partitions; nothing is deleted silently.
            let repair = try runFjord(["log", "repair", damagedDirectory.path, "--truncate-after-damage"])
            #expect(repair.status == 0, "\(repair.error)")
            #expect(FileManager.default.fileExists(atPath: damagedSegment.path + ".damaged"))
            let accept = try runFjord(["log", "repair", shortenedDirectory.path, "--accept-lost-tail"])
            #expect(accept.status == 0, "\(accept.error)")
            let verified = try runFjord(["log", "verify", damagedDirectory.path, shortenedDirectory.path])
            #expect(verified.status == 0, "\(verified.output)")

            try await withServeProcess(dataDirectory: data) { broker in
                let consumed = try runFjord(
                    ["consume", "t", "--partition", "0", "--from-beginning", "--timeout-ms", "3000"] + broker.flags)
                #expect(consumed.status == 0, "\(consumed.error)")
                #expect(consumed.output.split(separator: "\n").count == servable0)
            }
        }
    }
}

private func segmentFiles(_ directory: URL) throws -> [URL] {
    try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".log") }.sorted()
        .map { directory.appendingPathComponent($0) }
}

private func framePositions(_ data: Data) -> [Int] {
    data.withUnsafeBytes { bytes in
        var iterator = FramedBatchIterator(bytes)
        var positions: [Int] = []
        while let framed = iterator.next() { positions.append(framed.position) }
        return positions
    }
}

private func firstOffset(ofFrame index: Int, in data: Data) throws -> Int {
    data.withUnsafeBytes { bytes in
        var iterator = FramedBatchIterator(bytes)
        var frame = 0
        while let framed = iterator.next() {
            if frame == index { return Int(framed.batch.baseOffset) }
            frame += 1
        }
        return -1
    }
}
