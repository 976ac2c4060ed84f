import ArgumentParser
import FjordClient
import Foundation

/// `fjord produce TOPIC`: sends stdin lines as records.
struct ProduceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Send lines from standard input as records.",
        discussion: """
            Each line is one record (the value). With --key-separator, the text before the first
            separator is the key. Keyed records go to the partition Kafka's default partitioner
            would choose; unkeyed ones are spread across partitions. With --format json each line
            is an object {"key": base64|null, "value": base64, "timestamp": ms, "headers":
            [{"key": name, "value": base64}], "partition": n} and the offsets are printed as JSON
            (tools/clients/README.md).

            Examples:
              echo hello | fjord produce greetings
              printf 'user-1:login\\nuser-2:logout\\n' | fjord produce events --key-separator : --acks durable
              fjord produce events --format json < records.jsonl
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Topic to send to.") var topic: String
    @Option(help: "Split each line into key and value at the first occurrence of this text.") var keySeparator: String?
    @Option(help: "none, leader or durable.") var acks: AcksOption = .leader
    @Option(help: "Send every record to this partition.") var partition: Int?
    @Option(help: "text (a line is a value) or json (see above).") var format: LineFormat = .text
    @Flag(help: "Print partition and offset of each record.") var printOffsets = false

    func run() async throws {
        var producerConfiguration = ProducerConfiguration()
        producerConfiguration.acks = acks.value
        producerConfiguration.linger = .milliseconds(2)
        let clientConfiguration = try connection.clientConfiguration()
        let client = FjordClient(configuration: clientConfiguration)
        let producer = client.makeProducer(configuration: producerConfiguration)
        let results = ResultCollector()
        var lineNumber = 0
        var failed = false
        do {
            _ = try await client.metadata(topic: topic)
            while let line = readLine(strippingNewline: true) {
                lineNumber += 1
                if format == .text && line.isEmpty { continue }
                var record: ProducerRecord
                switch format {
                case .json:
                    if line.allSatisfy(\.isWhitespace) { continue }
                    record = try JSONRecordLine.parse(line, line: lineNumber, topic: topic)
                case .text:
                    if let keySeparator, let range = line.range(of: keySeparator) {
                        record = ProducerRecord(
                            topic: topic, key: Array(line[..<range.lowerBound].utf8), value: Array(line[range.upperBound...].utf8))
                    } else {
                        record = ProducerRecord(topic: topic, value: Array(line.utf8))
                    }
                }
                if let partition { record.partition = partition }
                let index = results.reserve()
                try await producer.enqueue(record) { result in results.set(index, result) }
            }
            try await producer.close()
        } catch {
            try? await producer.close()
            await client.close()
            throw fail(error)
        }
        await client.close()
        for result in results.all() {
            switch result {
            case .success(let metadata):
                if format == .json {
                    print("{\"partition\": \(metadata.partition), \"offset\": \(metadata.offset)}")
                } else if printOffsets {
                    print("\(metadata.partition)\t\(metadata.offset)")
                }
            case .failure(let error):
                failed = true
                FileHandle.standardError.write(Data("fjord: a record failed: \(error)\n".utf8))
            case nil:
                failed = true
            }
        }
        if failed { throw ExitCode(1) }
    }
}

/// Results in input order, filled in by delivery callbacks.
final class ResultCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<RecordMetadata, FjordClientError>?] = []

    func reserve() -> Int {
        lock.lock()
        defer { lock.unlock() }
        results.append(nil)
        return results.count - 1
    }

    func set(_ index: Int, _ result: Result<RecordMetadata, FjordClientError>) {
        lock.lock()
        results[index] = result
        lock.unlock()
    }

    func all() -> [Result<RecordMetadata, FjordClientError>?] {
        lock.lock()
        defer { lock.unlock() }
        return results
    }
}

enum AcksOption: String, ExpressibleByArgument, CaseIterable {
    case none, leader, durable
    var value: ProducerConfiguration.Acks {
        switch self {
        case .none: .none
        case .leader: .leader
        case .durable: .durable
        }
    }
}

enum LineFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}
