public import Foundation

extension BrokerConfiguration {
    /// An invalid setting, naming its key, value and where it came from.
    public struct Error: Swift.Error, Sendable, CustomStringConvertible {
        /// What is wrong and what to do.
        public var message: String
        public var description: String { message }
    }

    /// Loads defaults, then `file` (if given), then the `FJORD_*` environment, then `flags`.
    ///
    /// The file is a JSON object of keys to values (strings, numbers or booleans), for example
    /// `{"listen": "0.0.0.0:7420", "log.retention.ms": 86400000}`.
    public static func load(
        file: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
        flags: [String: String] = [:]
    ) throws(Error) -> BrokerConfiguration {
        var configuration = BrokerConfiguration()
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw Error(message: "cannot read the configuration file \(file); check the path given with --config")
            }
            let object: Any
            do { object = try JSONSerialization.jsonObject(with: data) } catch {
                throw Error(message: "\(file) is not valid JSON: \(error.localizedDescription)")
            }
            guard let dictionary = object as? [String: Any] else {
                throw Error(message: "\(file) must hold one JSON object of \"key\": value pairs")
            }
            var values: [String: String] = [:]
            for (key, value) in dictionary {
                switch value {
                case let text as String: values[key] = text
                case let flag as Bool where !(value is NSNumber): values[key] = flag ? "true" : "false"
                // Booleans may arrive as NSNumber: "1"/"0" are accepted wherever true/false are.
                case let number as NSNumber: values[key] = number.stringValue
                default: throw Error(message: "\(file): the value of \"\(key)\" must be a string, number or boolean")
                }
            }
            try configuration.apply(values, source: file)
        }
        var fromEnvironment: [String: String] = [:]
        for key in keys {
            let name = "FJORD_" + key.uppercased().replacingOccurrences(of: ".", with: "_")
            if let value = environment[name] { fromEnvironment[key] = value }
        }
        try configuration.apply(fromEnvironment, source: "the environment")
        try configuration.apply(flags, source: "the command line")
        return configuration
    }

    /// Applies `key: value` settings; `source` names where they came from in errors.
    public mutating func apply(_ values: [String: String], source: String) throws(Error) {
        for key in values.keys.sorted() {
            try apply(key: key, value: values[key]!, source: source)
        }
        do { _ = try logDefaults() } catch {
            throw Error(message: "\(source): invalid topic default: \(error.message)")
        }
        do { _ = try principalMapper() } catch {
            throw Error(message: "\(source): \(error.message)")
        }
    }

    private mutating func apply(key: String, value: String, source: String) throws(Error) {
        func fail(_ expected: String) -> Error {
            Error(message: "\(source): \(key) must be \(expected), not \"\(value)\"")
        }
        func int(_ range: ClosedRange<Int>) throws(Error) -> Int {
            guard let number = Int(value), range.contains(number) else { throw fail("an integer in \(range)") }
            return number
        }
        func address() throws(Error) -> Address {
            guard let address = Address(parsing: value) else { throw fail("host:port") }
            return address
        }
        func bool() throws(Error) -> Bool {
            switch value.lowercased() {
            case "true", "1", "yes", "on": return true
            case "false", "0", "no", "off": return false
            default: throw fail("true or false")
            }
        }
        switch key {
        case "node.id": nodeID = Int32(try int(0...Int(Int32.max)))
        case "data.dir":
            guard !value.isEmpty else { throw fail("a directory") }
            dataDirectory = value
        case "listen": listen = try address()
        case "plaintext.listen": plaintextListen = value.isEmpty || value == "off" ? nil : try address()
        case "operations.listen": operationsListen = value.isEmpty || value == "off" ? nil : try address()
        case "advertised.host": advertisedHost = value.isEmpty ? nil : value
        case "tls.certificate": tlsCertificatePath = value.isEmpty ? nil : value
        case "tls.key": tlsPrivateKeyPath = value.isEmpty ? nil : value
        case "tls.client.ca": tlsClientCAPath = value.isEmpty ? nil : value
        case "tls.client.auth":
            switch value {
            case "none": requireClientCertificate = false
            case "required": requireClientCertificate = true
            default: throw fail("none or required")
            }
        case "tls.principal.source":
            guard let parsed = PrincipalMapper.Source(rawValue: value) else {
                throw fail(PrincipalMapper.Source.allCases.map(\.rawValue).joined(separator: ", ").replacingLastComma())
            }
            principalSource = parsed
        case "tls.principal.mapping.rules": principalMappingRules = value
        case "authorizer.enable": authorizerEnabled = try bool()
        case "super.users":
            var users: Set<Principal> = []
            for text in value.split(separator: ";") {
                let trimmed = text.trimmingCharacters(in: .whitespaces)
                guard !trimmed.isEmpty else { continue }
                do { users.insert(try Principal(parsing: trimmed)) } catch {
                    throw fail("principals of the form User:name separated by ';'")
                }
            }
            superUsers = users
        case "max.connections": maxConnections = try int(1...1_000_000)
        case "handshake.timeout.ms": handshakeTimeoutMilliseconds = try int(100...3_600_000)
        case "max.connections.per.address": maxConnectionsPerAddress = try int(0...1_000_000)
        case "max.handshaking.connections": maxHandshakingConnections = try int(1...1_000_000)
        case "connections.max.idle.ms": connectionsMaxIdleMilliseconds = try int(0...Int(Int32.max))
        case "storage.max.in.flight.operations": storageMaxInFlightOperations = try int(1...1_000_000)
        case "quota.producer.bytes.per.sec": producerQuotaBytesPerSecond = try int(0...(1 << 40))
        case "quota.consumer.bytes.per.sec": consumerQuotaBytesPerSecond = try int(0...(1 << 40))
        case "max.frame.bytes": maxFrameBytes = try int(4096...(1 << 30))
        case "max.in.flight.bytes": maxInFlightBytesPerConnection = try int(65536...(1 << 40))
        case "connection.max.queued.bytes": maxQueuedBytesPerConnection = try int(65536...(1 << 40))
        case "broker.max.queued.bytes": maxQueuedBytes = try int(1 << 20...(1 << 50))
        case "queued.max.request.bytes": maxQueuedRequestBytes = try int(1 << 20...(1 << 50))
        case "request.timeout.ms": requestTimeoutMilliseconds = try int(100...3_600_000)
        case "max.partitions.per.topic": maxPartitionsPerTopic = try int(1...100_000)
        case "max.fetch.wait.ms": maxFetchWaitMilliseconds = try int(0...3_600_000)
        case "auto.create.topics.enable": autoCreateTopics = try bool()
        case "num.partitions": autoCreatePartitions = try int(1...100_000)
        case "storage.threads": storageThreads = try int(1...1024)
        case "event.loop.threads": eventLoopThreads = try int(1...1024)
        case "log.retention.check.interval.ms": retentionCheckIntervalMilliseconds = Int64(try int(100...Int(Int32.max)))
        case "log.scrub.bytes.per.second": scrubBytesPerSecond = try int(0...(1 << 40))
        case "log.scrub.interval.ms": scrubIntervalMilliseconds = Int64(try int(10...3_600_000))
        case "log.recovery.point.checkpoint.interval.ms":
            recoveryPointCheckpointIntervalMilliseconds = Int64(try int(0...Int(Int32.max)))
        default:
            guard let topicKey = Self.topicDefaultKeys[key] else {
                throw Error(message: "\(source): unknown setting \"\(key)\"; docs/configuration.md lists the settings")
            }
            topicDefaults[topicKey] = value
        }
    }
}

extension String {
    /// `a, b, c` as `a, b or c`.
    fileprivate func replacingLastComma() -> String {
        guard let range = range(of: ", ", options: .backwards) else { return self }
        return replacingCharacters(in: range, with: " or ")
    }
}
