import ArgumentParser

/// `fjord log`: tools that work on log directories directly, without a broker.
struct LogCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Inspect partition log directories and segment files.",
        subcommands: [LogDumpCommand.self, LogVerifyCommand.self, LogRepairCommand.self]
    )
}
