import ArgumentParser

/// The `fjord` command line: operations and inspection tools for Fjord logs.
@main
struct FjordCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fjord",
        abstract: "Fjord: a commit-log broker for Swift servers.",
        discussion: """
            Examples:
              fjord serve                                       # single-node broker, TLS on 127.0.0.1:7420
              fjord log dump /var/lib/fjord/orders-0            # segments, batches, offsets, CRC status
              fjord log dump --records 00000000000000000000.log # also every record
              fjord bench log --record-size 100 --batch-bytes 16384 --compare-dd
            """,
        subcommands: [
            ServeCommand.self, TopicsCommand.self, ProduceCommand.self, ConsumeCommand.self, ACLCommand.self, CertsCommand.self,
            LogCommand.self, BenchCommand.self,
        ]
    )
}
