public import ArgumentParser
import FjordBroker
import FjordTLS
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// `fjord serve`: runs a single-node broker until SIGTERM or SIGINT.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a single-node Fjord broker.",
        discussion: """
            With no flags the broker keeps its data in ~/.local/share/fjord ($FJORD_DATA_DIR or
            $XDG_DATA_HOME/fjord if set), listens for TLS on 127.0.0.1:7420 and serves /metrics and
            /health on 127.0.0.1:7421. On first start it generates a development CA and server
            certificate in DATA_DIR/certs and prints where the CA is; clients must trust that CA.

            Settings come from defaults, then --config FILE (a JSON object), then FJORD_* environment
            variables, then flags; docs/configuration.md lists every key.

            Examples:
              fjord serve
              fjord serve --data-dir /var/lib/fjord --listen 0.0.0.0:7420
              fjord serve --set tls.client.auth=required --set tls.client.ca=clients-ca.pem
              FJORD_LOG_RETENTION_MS=86400000 fjord serve --config /etc/fjord/broker.json
            """
    )

    @Option(help: "A JSON configuration file.")
    var config: String?

    @Option(help: "Directory for logs, metadata and generated certificates (data.dir).")
    var dataDir: String?

    @Option(help: "TLS listener as host:port (listen).")
    var listen: String?

    @Option(help: "Plaintext listener as host:port, off by default (plaintext.listen).")
    var plaintextListen: String?

    @Option(help: "HTTP /metrics and /health as host:port, or off (operations.listen).")
    var operationsListen: String?

    @Option(name: .customLong("set"), help: "Any setting as key=value; may repeat.")
    var settings: [String] = []

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        var flags: [String: String] = [:]
        for setting in settings {
            guard let equals = setting.firstIndex(of: "=") else {
                throw ValidationError("--set takes key=value, not \"\(setting)\"")
            }
            flags[String(setting[..<equals])] = String(setting[setting.index(after: equals)...])
        }
        if let dataDir { flags["data.dir"] = dataDir }
        if let listen { flags["listen"] = listen }
        if let plaintextListen { flags["plaintext.listen"] = plaintextListen }
        if let operationsListen { flags["operations.listen"] = operationsListen }
        let configuration: BrokerConfiguration
        do {
            configuration = try BrokerConfiguration.load(file: config, flags: flags)
        } catch {
            throw ValidationError(error.message)
        }

        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "fjord")
        let broker = Broker(configuration: configuration, logger: logger)
        let service = BrokerService(broker: broker) { broker in
            var lines = ["fjord: broker listening on \(broker.tlsAddress.map { "\($0)" } ?? "?") (TLS)"]
            if let plaintext = broker.plaintextAddress { lines.append("fjord: plaintext listener on \(plaintext)") }
            if let port = broker.operationsPort { lines.append("fjord: /metrics and /health on port \(port)") }
            if let certificates = broker.developmentCertificates {
                lines.append("fjord: development CA for clients: \(certificates.caCertificatePath)")
            }
            lines.append("fjord: data in \(configuration.dataDirectory); stop with Ctrl-C or SIGTERM")
            // Written and flushed at once: a parent process reads the port from this even through a pipe.
            FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        }
        let group = ServiceGroup(
            configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
