import ArgumentParser

/// `fjord bench`: throughput and latency measurements.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure Fjord's throughput. Build with `swift build -c release` first.",
        subcommands: [BenchProduceCommand.self, BenchConsumeCommand.self, BenchRoundtripCommand.self, BenchLogCommand.self]
    )
}
