import ArgumentParser
import FjordClient
import FjordProto
import Foundation

/// `fjord topics`: create, list, describe and delete topics.
struct TopicsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topics",
        abstract: "Create, list, describe and delete topics.",
        discussion: """
            Examples:
              fjord topics create orders --partitions 6 --config retention.ms=86400000
              fjord topics list
              fjord topics describe orders
              fjord topics delete orders
            """,
        subcommands: [Create.self, List.self, Describe.self, Delete.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a topic.",
            discussion: "Example: fjord topics create orders --partitions 6 --config retention.ms=86400000")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Topic name: letters, digits, '.', '_' and '-'.") var name: String
        @Option(help: "Number of partitions.") var partitions = 1
        @Option(name: .customLong("config"), help: "A topic setting as key=value (retention.ms, segment.bytes, ...); may repeat.")
        var configs: [String] = []

        func run() async throws {
            var settings: [String: String] = [:]
            for config in configs {
                guard let equals = config.firstIndex(of: "=") else { throw ValidationError("--config takes key=value, not \"\(config)\"") }
                settings[String(config[..<equals])] = String(config[config.index(after: equals)...])
            }
            try await withClient(connection) { client in
                let topic = try await client.admin.createTopic(name, partitions: partitions, configs: settings)
                print("created topic \(topic.name) with \(topic.partitions.count) partition\(topic.partitions.count == 1 ? "" : "s")")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List topic names.", discussion: "Example: fjord topics list")
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await withClient(connection) { client in
                for name in try await client.admin.listTopics() { print(name) }
            }
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a topic's partitions, offsets and settings.", discussion: "Example: fjord topics describe orders")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Topic name.") var name: String

        func run() async throws {
            try await withClient(connection) { client in
                let topic = try await client.admin.describeTopic(name)
                print("topic \(topic.name) (id \(topic.topicID)), \(topic.partitions.count) partitions")
                for (key, value) in topic.configs.sorted(by: { $0.key < $1.key }) { print("  \(key)=\(value)") }
                print("  partition  leader  epoch  log-start  high-watermark")
                for partition in topic.partitions {
                    print(
                        "  " + [
                            String(partition.partition).padding(9), String(partition.leaderID).padding(6),
                            String(partition.leaderEpoch).padding(5), String(partition.logStartOffset).padding(9),
                            String(partition.highWatermark),
                        ].joined(separator: "  "))
                }
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a topic and all its records.", discussion: "Example: fjord topics delete orders")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Topic name.") var name: String

        func run() async throws {
            try await withClient(connection) { client in
                try await client.admin.deleteTopic(name)
                print("deleted topic \(name)")
            }
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

/// Runs `body` with a client, closing it afterwards; errors are printed with a hint and exit 1.
func withClient(_ options: ConnectionOptions, _ body: (FjordClient) async throws -> Void) async throws {
    let client = FjordClient(configuration: try options.clientConfiguration())
    do {
        try await body(client)
        await client.close()
    } catch let error as ExitCode {
        await client.close()
        throw error
    } catch let error as ValidationError {
        await client.close()
        throw error
    } catch {
        await client.close()
        throw fail(error)
    }
}
