import Foundation

/// Writes a target's seed inputs when `FJORD_FUZZ_WRITE_SEEDS` names a directory, then exits.
public enum FuzzSeedWriter {
    /// Called from `LLVMFuzzerInitialize`.
    public static func writeIfAsked(target: String) {
        guard let directory = ProcessInfo.processInfo.environment["FJORD_FUZZ_WRITE_SEEDS"] else { return }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for (index, seed) in FuzzTargets.seeds(for: target).enumerated() {
                try Data(seed).write(to: URL(fileURLWithPath: "\(directory)/seed-\(index)"))
            }
            exit(0)
        } catch {
            FileHandle.standardError.write(Data("writing seeds failed: \(error)\n".utf8))
            exit(1)
        }
    }
}
