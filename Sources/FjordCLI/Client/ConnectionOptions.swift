import ArgumentParser
import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import FjordTLS
import Foundation

/// The broker address and TLS files every client command takes, as flags or environment variables.
struct ConnectionOptions: ParsableArguments {
    @Option(
        name: .customLong("broker"),
        help: "Broker host:port; repeat for several (env FJORD_BROKER, comma-separated; default 127.0.0.1:7420).")
    var brokers: [String] = []

    @Option(help: "PEM CA certificate that signed the broker's certificate (env FJORD_CA; default: the CA `fjord serve` generated in its data directory).")
    var ca: String?

    @Option(help: "PEM client certificate, for brokers that require mutual TLS (env FJORD_CERT).")
    var cert: String?

    @Option(help: "PEM private key of --cert (env FJORD_KEY).")
    var key: String?

    @Flag(help: "Connect without TLS (only to a broker's plaintext listener).")
    var plaintext = false

    @Option(help: "Client id the broker logs.")
    var clientID = "fjord-cli"

    func clientConfiguration() throws -> FjordClientConfiguration {
        let environment = ProcessInfo.processInfo.environment
        var texts = brokers
        if texts.isEmpty, let value = environment["FJORD_BROKER"] {
            texts = value.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
        }
        if texts.isEmpty { texts = ["127.0.0.1:7420"] }
        let addresses = try texts.map { text in
            guard let address = BrokerAddress(text) else {
                throw ValidationError("--broker takes host:port, not \"\(text)\"")
            }
            return address
        }
        var configuration = FjordClientConfiguration(brokers: addresses)
        configuration.clientID = clientID
        configuration.reconnect.giveUpAfter = .seconds(10)
        if !plaintext {
            let caPath = ca ?? environment["FJORD_CA"].flatMap { $0.isEmpty ? nil : $0 } ?? Self.defaultCA()
            guard let caPath else {
                throw SetupError(
                    description:
                        "no CA to trust the broker with: pass --ca FILE (or set FJORD_CA) with the CA that signed the broker's certificate; a broker started with `fjord serve` defaults keeps it in DATA_DIR/certs/ca.pem (\(BrokerConfiguration.defaultDataDirectory) unless FJORD_DATA_DIR says otherwise)")
            }
            guard FileManager.default.fileExists(atPath: caPath) else {
                throw SetupError(description: "the CA file \(caPath) does not exist; pass --ca FILE")
            }
            let certificate = cert ?? environment["FJORD_CERT"]
            let privateKey = key ?? environment["FJORD_KEY"]
            if (certificate == nil) != (privateKey == nil) {
                throw ValidationError("--cert and --key go together (mutual TLS needs both)")
            }
            configuration.tls = ClientTLSConfiguration(
                trustRootsPath: caPath, certificateChainPath: certificate, privateKeyPath: privateKey)
        }
        return configuration
    }

    /// The CA a default `fjord serve` generated, if it exists: in the data directory the broker
    /// picks by default (the same rule, so both agree whatever `HOME` and `XDG_DATA_HOME` say).
    static func defaultCA() -> String? {
        let dataDirectory = ProcessInfo.processInfo.environment["FJORD_DATA_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        let path = (dataDirectory ?? BrokerConfiguration.defaultDataDirectory) + "/certs/ca.pem"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    /// The connection cannot be set up as asked (not a usage error: no usage is printed).
    struct SetupError: Error, CustomStringConvertible {
        var description: String
    }
}

/// Prints an error the way every client command does, with what to do next, and exits non-zero.
func fail(_ error: any Error) -> ExitCode {
    var message = "\(error)"
    if let error = error as? FjordClientError {
        message = error.code == .unknown ? error.message : "\(error.code.name): \(error.message)"
        if error.message.hasPrefix("could not reach any broker") {
            message += "\nhint: is the broker running (`fjord serve`)? Pass its address with --broker HOST:PORT or FJORD_BROKER"
        }
        switch error.code {
        case .unknownTopicOrPartition:
            message += "\nhint: list topics with `fjord topics list`, or create it with `fjord topics create NAME`"
        case .topicAlreadyExists:
            message += "\nhint: `fjord topics describe NAME` shows it"
        case .topicAuthorizationFailed, .groupAuthorizationFailed, .clusterAuthorizationFailed:
            message += "\nhint: `fjord acl whoami` prints who the broker takes you for; an administrator grants access with `fjord acl add`"
        case .authenticationFailed:
            message += "\nhint: the broker maps client certificates to principals with tls.principal.source and tls.principal.mapping.rules"
        default:
            break
        }
    }
    FileHandle.standardError.write(Data("fjord: \(message)\n".utf8))
    return ExitCode(1)
}
