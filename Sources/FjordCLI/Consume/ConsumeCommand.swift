import ArgumentParser
import FjordClient
import Foundation

/// `fjord consume TOPIC`: prints records.
struct ConsumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Print a topic's records.",
        discussion: """
            Reads every partition (or --partition) from the chosen position and prints each record's
            value, one per line (--print-key, --print-offset, --print-timestamp add columns; --format
            json prints the objects of tools/clients/README.md). Stops after --max-records, or once no
            record arrived for --timeout-ms, unless --follow.

            Examples:
              fjord consume events --from-beginning
              fjord consume events --partition 2 --offset 1000 --max-records 10 --print-offset
              fjord consume events --from-time 1764230400000 --follow --print-key
              fjord consume events --from-beginning --format json --timeout-ms 2000
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Topic to read.") var topic: String
    @Flag(help: "Start at the first stored record.") var fromBeginning = false
    @Option(help: "Start at this offset (with --partition, or in every partition).") var offset: Int64?
    @Option(help: "Start at the first record at or after this time (ms since the epoch).") var fromTime: Int64?
    @Option(help: "Read only this partition.") var partition: Int?
    @Flag(help: "Keep waiting for new records.") var follow = false
    @Option(help: "Stop after this many records.") var maxRecords: Int?
    @Option(help: "Without --follow, stop once no record arrived for this long.") var timeoutMs = 10_000
    @Option(help: "text or json.") var format: LineFormat = .text
    @Flag(help: "Print the key before the value.") var printKey = false
    @Flag(help: "Print partition and offset first.") var printOffset = false
    @Flag(help: "Print the timestamp (ms).") var printTimestamp = false

    func validate() throws {
        if [fromBeginning, offset != nil, fromTime != nil].filter({ $0 }).count > 1 {
            throw ValidationError("choose one of --from-beginning, --offset and --from-time")
        }
    }

    func run() async throws {
        let position: SeekPosition =
            if fromBeginning { .earliest } else if let offset { .offset(offset) } else if let fromTime {
                .timestamp(fromTime)
            } else { .latest }
        var consumerConfiguration = ConsumerConfiguration()
        consumerConfiguration.autoOffsetReset = .earliest
        let client = FjordClient(configuration: try connection.clientConfiguration())
        let consumer = client.makeConsumer(configuration: consumerConfiguration)
        var printed = 0
        do {
            if let partition {
                try await consumer.assign([TopicPartition(topic, partition)], from: position)
            } else {
                try await consumer.assign(topic: topic, from: position)
            }
            let follow = self.follow
            let timeout = Duration.milliseconds(timeoutMs)
            let limit = maxRecords
            let watchdog = IdleWatchdog()
            let timer = Task {
                while !follow {
                    try await Task.sleep(for: .milliseconds(50))
                    if watchdog.idle(longerThan: timeout) {
                        await consumer.close()
                        return
                    }
                }
            }
            var output = ""
            for try await record in consumer.records {
                watchdog.touch()
                output += line(for: record)
                output += "\n"
                printed += 1
                if output.utf8.count > 64 << 10 {
                    FileHandle.standardOutput.write(Data(output.utf8))
                    output = ""
                }
                if let limit, printed >= limit { break }
            }
            FileHandle.standardOutput.write(Data(output.utf8))
            timer.cancel()
            await consumer.close()
            await client.close()
        } catch {
            await consumer.close()
            await client.close()
            throw fail(error)
        }
    }

    private func line(for record: ConsumerRecord) -> String {
        if format == .json { return JSONRecordLine.format(record) }
        var columns: [String] = []
        if printOffset { columns += ["\(record.partition)", "\(record.offset)"] }
        if printTimestamp { columns.append("\(record.timestamp)") }
        if printKey { columns.append(record.key.map { String(decoding: $0, as: UTF8.self) } ?? "null") }
        columns.append(record.value.map { String(decoding: $0, as: UTF8.self) } ?? "null")
        return columns.joined(separator: "\t")
    }
}

/// When the last record arrived.
final class IdleWatchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var last = ContinuousClock.now

    func touch() {
        lock.lock()
        last = .now
        lock.unlock()
    }

    func idle(longerThan duration: Duration) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return ContinuousClock.now - last > duration
    }
}
