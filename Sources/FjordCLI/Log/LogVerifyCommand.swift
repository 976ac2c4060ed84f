import ArgumentParser
import FjordStorage
import Foundation
import SystemPackage

/// `fjord log verify`: checks every batch and index of stopped partitions' log directories.
struct LogVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every batch and index entry of partition log directories (broker stopped).",
        discussion: """
            Checks each batch's frame, header and CRC32C, that base offsets continue from one batch
            (and segment) to the next, that leader epochs never decrease, that index entries point
            at the batches they name, and that the log did not lose a tail it had made durable.
            Reads only; repair with `fjord log repair`.

            Exit status: 0 when every directory is sound, 1 when any has damage or a lost tail,
            2 when a directory cannot be read.

            Example:
              fjord log verify /var/lib/fjord/data/logs/orders-0 /var/lib/fjord/data/logs/orders-1
            """
    )

    @Argument(help: "Partition log directories.")
    var directories: [String]

    @Flag(help: "Print nothing but problems.")
    var quiet = false

    mutating func run() throws {
        var damaged = false
        var unreadable = false
        for directory in directories {
            let progress = ProgressBar(label: "verifying \(directory)", enabled: !quiet)
            let report: LogVerificationReport
            do {
                report = try LogVerifier.verify(directory: FilePath(directory)) { progress.update(done: $0, total: $1) }
            } catch {
                progress.finish()
                printError("\(directory): cannot be verified: \(error)")
                unreadable = true
                continue
            }
            progress.finish()
            for problem in report.problems { print("DAMAGED \(problem)") }
            if report.isSound {
                if !quiet {
                    print(
                        "OK \(directory): \(report.segments) segments, \(report.batches) batches, \(report.bytes) bytes, offsets \(report.logStartOffset) to \(report.validEndOffset - 1)"
                    )
                }
            } else {
                damaged = true
                print(
                    "\(directory): \(report.problems.count) problem(s); valid up to offset \(report.validEndOffset). Repair: fjord log repair \(directory) --truncate-after-damage (or --accept-lost-tail for a lost tail)"
                )
            }
        }
        if unreadable { throw ExitCode(2) }
        if damaged { throw ExitCode(1) }
    }
}

/// `fjord log repair`: makes a damaged partition directory servable again, keeping what it removes.
struct LogRepairCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repair",
        abstract: "Repair a stopped partition's log directory; removed data goes to .damaged files.",
        discussion: """
            --truncate-after-damage keeps the log up to its first damaged batch. The damaged
            segment's bytes from there on are written to <segment>.log.damaged, later segments are
            renamed to <segment>.log.damaged (nothing is deleted but index files, which the broker
            rebuilds), and the log's recovery point is set to the new end.

            --accept-lost-tail accepts that a log which came back shorter than it had made durable
            ends where it ends now (the broker keeps such a partition offline until then).

            Run it with the broker stopped. Exit status 0 on success, 1 when nothing could be repaired.

            Example:
              fjord log repair /var/lib/fjord/data/logs/orders-0 --truncate-after-damage
            """
    )

    @Argument(help: "A partition log directory.")
    var directory: String

    @Flag(help: "Keep the valid prefix, move everything from the first damaged batch on to .damaged files.")
    var truncateAfterDamage = false

    @Flag(help: "Accept that the log lost its tail: serve it from where it ends now.")
    var acceptLostTail = false

    mutating func validate() throws {
        guard truncateAfterDamage || acceptLostTail else {
            throw ValidationError("say what to repair: --truncate-after-damage and/or --accept-lost-tail")
        }
    }

    mutating func run() throws {
        let path = FilePath(directory)
        do {
            if truncateAfterDamage {
                let result = try LogRepair.truncateAfterDamage(directory: path)
                if result.damagedFiles.isEmpty {
                    print("\(directory): no damaged batch; nothing removed (log end \(result.logEndOffset))")
                } else {
                    print("\(directory): moved \(result.removedBytes) bytes out of the log; the log now ends at offset \(result.logEndOffset)")
                    for file in result.damagedFiles { print("  kept in \(file)") }
                }
            }
            if acceptLostTail {
                let result = try LogRepair.acceptLostTail(directory: path)
                print("\(directory): accepted the log as it is; it ends at offset \(result.logEndOffset)")
            }
        } catch {
            printError("\(directory): \(error)")
            throw ExitCode(1)
        }
    }
}

private func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// A progress bar on standard error for long offline checks, when it is a terminal.
final class ProgressBar {
    private let label: String
    private let enabled: Bool
    private var lastPercent = -1

    init(label: String, enabled: Bool) {
        self.label = label
        self.enabled = enabled && isatty(STDERR_FILENO) != 0
    }

    func update(done: Int, total: Int) {
        guard enabled, total > 0 else { return }
        let percent = Int(100 * Double(done) / Double(total))
        guard percent != lastPercent else { return }
        lastPercent = percent
        let filled = percent * 30 / 100
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: 30 - filled)
        FileHandle.standardError.write(
            Data("\r\(label) [\(bar)] \(percent)% (\(done >> 20) of \(total >> 20) MiB)".utf8))
    }

    func finish() {
        guard enabled, lastPercent >= 0 else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
