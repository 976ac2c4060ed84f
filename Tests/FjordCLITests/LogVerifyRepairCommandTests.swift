import FjordRecords
import Foundation
import Testing

/// `fjord log verify` and `fjord log repair` exit codes and effects, on real files.
@Suite struct LogVerifyRepairCommandTests {
    @Test func verifyAndRepairExitCodes() async throws {
        try await withTemporaryDirectory { directory in
            try await makeLog(in: directory, batches: 6)
            let sound = try runFjord(["log", "verify", directory.path])
            #expect(sound.status == 0, "\(sound.output)\(sound.error)")
            #expect(sound.output.contains("OK \(directory.path): 1 segments, 6 batches"))

            let segment = directory.appendingPathComponent("00000000000000000000.log")
            var bytes = try Data(contentsOf: segment)
            var positions: [Int] = []
            bytes.withUnsafeBytes { raw in
                var iterator = FramedBatchIterator(raw)
                while let framed = iterator.next() { positions.append(framed.position) }
            }
            bytes[positions[3] + RecordBatchLayout.baseOffset + BatchFraming.prefixSize + 2] ^= 0x10
            try bytes.write(to: segment)

            let damaged = try runFjord(["log", "verify", directory.path])
            #expect(damaged.status == 1)
            #expect(damaged.output.contains("DAMAGED \(segment.path) at byte \(positions[3]) (offsets from 9)"))

            let unreadable = try runFjord(["log", "verify", directory.path + "/missing"])
            #expect(unreadable.status == 2)

            let noMode = try runFjord(["log", "repair", directory.path])
            #expect(noMode.status != 0)
            #expect(noMode.error.contains("--truncate-after-damage"))

            let repaired = try runFjord(["log", "repair", directory.path, "--truncate-after-damage"])
            #expect(repaired.status == 0, "\(repaired.error)")
            #expect(repaired.output.contains("the log now ends at offset 9"))
            let kept = try Data(contentsOf: URL(fileURLWithPath: segment.path + ".damaged"))
            #expect(kept == bytes.suffix(from: positions[3]))

            let after = try runFjord(["log", "verify", directory.path])
            #expect(after.status == 0, "\(after.output)")
            #expect(after.output.contains("3 batches"))
        }
    }
}
