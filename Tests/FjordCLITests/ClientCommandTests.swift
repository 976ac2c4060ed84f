import Foundation
import Testing

/// `fjord topics`, `produce`, `consume` and `certs` run as real processes against a real
/// `fjord serve` process on an ephemeral loopback port.
@Suite struct ClientCommandTests {
    @Test func produceLinesThenConsumeThemBack() async throws {
        try await withServeProcess { broker in
            let create = try runFjord(["topics", "create", "lines", "--partitions", "2"] + broker.flags)
            #expect(create.status == 0, "\(create.error)")
            #expect(create.output.contains("created topic lines with 2 partitions"))
            let list = try runFjord(["topics", "list"] + broker.flags)
            #expect(list.output.split(separator: "\n") == ["lines"])

            let produced = try runFjord(
                ["produce", "lines", "--key-separator", ":", "--acks", "durable", "--print-offsets"] + broker.flags,
                input: "k1:one\nk2:two\nk1:three\n")
            #expect(produced.status == 0, "\(produced.error)")
            #expect(produced.output.split(separator: "\n").count == 3)

            let consumed = try runFjord(
                ["consume", "lines", "--from-beginning", "--print-key", "--max-records", "3"] + broker.flags)
            #expect(consumed.status == 0, "\(consumed.error)")
            let lines = consumed.output.split(separator: "\n").map(String.init)
            #expect(Set(lines) == ["k1\tone", "k2\ttwo", "k1\tthree"])
            // Same key, same partition, in order.
            #expect(lines.firstIndex(of: "k1\tone")! < lines.firstIndex(of: "k1\tthree")!)

            let described = try runFjord(["topics", "describe", "lines"] + broker.flags)
            #expect(described.output.contains("2 partitions"))
            let deleted = try runFjord(["topics", "delete", "lines"] + broker.flags)
            #expect(deleted.status == 0)
        }
    }

    @Test func jsonLinesKeepKeysHeadersAndTimestamps() async throws {
        try await withServeProcess { broker in
            _ = try runFjord(["topics", "create", "json"] + broker.flags)
            let line = #"{"key": "azE=", "value": "dmFsdWU=", "timestamp": 1700000000123, "headers": [{"key": "h", "value": "AAE="}]}"#
            let produced = try runFjord(["produce", "json", "--format", "json"] + broker.flags, input: line + "\n")
            #expect(produced.status == 0, "\(produced.error)")
            #expect(produced.output.contains(#""offset": 0"#))
            let consumed = try runFjord(
                ["consume", "json", "--from-beginning", "--format", "json", "--max-records", "1"] + broker.flags)
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(consumed.output.utf8)) as? [String: Any])
            #expect(object["key"] as? String == "azE=")
            #expect(object["value"] as? String == "dmFsdWU=")
            #expect(object["timestamp"] as? Int == 1_700_000_000_123)
            #expect((object["headers"] as? [[String: Any]])?.first?["value"] as? String == "AAE=")
        }
    }

    @Test func benchProduceConsumeAndRoundtripPrintVerifiedJSON() async throws {
        try await withServeProcess { broker in
            for command in [
                ["bench", "produce", "--records", "20000", "--record-size", "100", "--json"],
                ["bench", "produce", "--records", "5000", "--record-size", "100", "--acks", "durable", "--partitions", "3", "--json"],
                ["bench", "consume", "--records", "20000", "--record-size", "100", "--json"],
                ["bench", "roundtrip", "--records", "200", "--warmup", "20", "--json"],
            ] {
                let result = try runFjord(command + broker.flags)
                #expect(result.status == 0, "\(command): \(result.error)")
                let object = try #require(
                    try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any], "\(command)")
                #expect(object["verified"] as? Bool == true, "\(command)")
                #expect((object["records_per_sec"] as? Double ?? 0) > 0)
                #expect(object["mb_per_sec"] != nil)
                if command[1] != "consume" {
                    #expect((object["p50_us"] as? Double ?? 0) > 0)
                    #expect(object["p99_us"] != nil && object["p999_us"] != nil)
                }
            }
            // The fresh topics are removed afterwards.
            let list = try runFjord(["topics", "list"] + broker.flags)
            #expect(list.output.isEmpty, "\(list.output)")
        }
    }

    @Test func errorsExitNonZeroAndSayWhatToDo() async throws {
        try await withServeProcess { broker in
            let unknown = try runFjord(["produce", "missing"] + broker.flags, input: "x\n")
            #expect(unknown.status == 1)
            #expect(unknown.error.contains("UNKNOWN_TOPIC_OR_PARTITION"))
            #expect(unknown.error.contains("fjord topics create"))

            let badJSON = try runFjord(["topics", "create", "t"] + broker.flags)
            #expect(badJSON.status == 0)
            let malformed = try runFjord(["produce", "t", "--format", "json"] + broker.flags, input: "{not json\n")
            #expect(malformed.status != 0)
            #expect(malformed.error.contains("line 1"))

            // A CA that did not sign the broker's certificate.
            try await withTemporaryDirectory { directory in
                _ = try runFjord(["certs", "ca", "--dir", directory.path])
                let untrusted = try runFjord(
                    ["topics", "list", "--broker", broker.address, "--ca", directory.path + "/ca.pem"])
                #expect(untrusted.status != 0)
                #expect(untrusted.error.contains("--ca"))
            }
        }
        let noCA = try runFjord(
            ["topics", "list", "--broker", "127.0.0.1:1", "--ca", "/nonexistent/ca.pem"])
        #expect(noCA.status != 0)
        #expect(noCA.error.contains("does not exist"))
    }

    @Test func theDefaultCAIsFoundWhereFjordServeKeepsIt() async throws {
        try await withServeProcess { broker in
            try await withTemporaryDirectory { home in
                // Where `fjord serve` with no flags keeps its CA for this HOME.
                let certs = home.path + "/.local/share/fjord/certs"
                try FileManager.default.createDirectory(atPath: certs, withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: broker.caPath, toPath: certs + "/ca.pem")
                let unset = ["XDG_DATA_HOME": "", "FJORD_DATA_DIR": "", "FJORD_CA": ""]
                let found = try runFjord(
                    ["topics", "list", "--broker", broker.address], environment: unset.merging(["HOME": home.path]) { $1 })
                #expect(found.status == 0, "\(found.error)")

                // No CA there: the error says what to pass and where `fjord serve` keeps it, without a usage dump.
                let missing = try runFjord(
                    ["topics", "list", "--broker", broker.address],
                    environment: unset.merging(["HOME": home.path + "/elsewhere"]) { $1 })
                #expect(missing.status != 0)
                #expect(missing.error.contains("--ca"))
                #expect(missing.error.contains(home.path + "/elsewhere/.local/share/fjord"))
                #expect(!missing.error.contains("Usage:"))
            }
        }
    }

    @Test func certsMakesACAAndCertificatesThatWorkForMutualTLS() async throws {
        try await withTemporaryDirectory { directory in
            let pki = directory.path
            #expect(try runFjord(["certs", "ca", "--dir", pki]).status == 0)
            #expect(try runFjord(["certs", "server", "--dir", pki]).status == 0)
            #expect(try runFjord(["certs", "client", "--dir", pki, "--name", "app"]).status == 0)
            for file in ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "app.pem", "app-key.pem"] {
                #expect(FileManager.default.fileExists(atPath: pki + "/" + file), "\(file)")
            }
            let settings = [
                "--set", "tls.certificate=\(pki)/server.pem", "--set", "tls.key=\(pki)/server-key.pem",
                "--set", "tls.client.ca=\(pki)/ca.pem", "--set", "tls.client.auth=required",
            ]
            try await withServeProcess(extra: settings) { broker in
                let withCertificate = try runFjord(
                    ["topics", "create", "secure", "--broker", broker.address, "--ca", pki + "/ca.pem",
                     "--cert", pki + "/app.pem", "--key", pki + "/app-key.pem"])
                #expect(withCertificate.status == 0, "\(withCertificate.error)")
                let without = try runFjord(["topics", "list", "--broker", broker.address, "--ca", pki + "/ca.pem"])
                #expect(without.status != 0)
            }
        }
    }
}

/// A `fjord serve` process on 127.0.0.1 with an ephemeral port and a temporary data directory.
struct ServeProcess {
    var address: String
    var caPath: String
    var pid: Int32
    var port: Int
    var flags: [String] { ["--broker", address, "--ca", caPath] }
}

func withServeProcess(extra: [String] = [], _ body: (ServeProcess) async throws -> Void) async throws {
    try await withTemporaryDirectory { directory in
        try await withServeProcess(dataDirectory: directory.appendingPathComponent("data"), extra: extra, body)
    }
}

/// Runs `fjord serve` on `dataDirectory` (kept afterwards, so a test can restart a broker on it),
/// stops it with SIGTERM (a clean shutdown) after `body`. Its standard error (the broker's log)
/// goes to `logFile` when given.
func withServeProcess(
    dataDirectory: URL, logFile: URL? = nil, extra: [String] = [], _ body: (ServeProcess) async throws -> Void
) async throws {
    let process = Process()
    process.executableURL = try fjordExecutable()
    process.arguments = [
        "serve", "--data-dir", dataDirectory.path, "--listen", "127.0.0.1:0", "--operations-listen", "off",
        "--log-level", "warning",
        // A loaded 2-core CI machine can take seconds per TLS handshake (see BrokerTestSupport).
        "--set", "handshake.timeout.ms=60000",
    ] + extra
    let output = dataDirectory.deletingLastPathComponent().appendingPathComponent("serve-\(UUID().uuidString).out")
    _ = FileManager.default.createFile(atPath: output.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: output) }
    process.standardOutput = try FileHandle(forWritingTo: output)
    if let logFile {
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: logFile)
    } else {
        process.standardError = FileHandle.nullDevice
    }
    try process.run()
    defer {
        process.terminate()
        process.waitUntilExit()
    }
    // "fjord: broker listening on [IPv4]127.0.0.1/127.0.0.1:PORT (TLS)"
    var port: Int?
    let deadline = ContinuousClock.now + .seconds(20)
    while port == nil, ContinuousClock.now < deadline, process.isRunning {
        try await Task.sleep(for: .milliseconds(50))
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        if let line = text.split(separator: "\n").first(where: { $0.contains("broker listening on") }),
            let colon = line.range(of: ":", options: .backwards, range: line.startIndex..<(line.range(of: " (TLS)")?.lowerBound ?? line.endIndex))
        {
            port = Int(line[colon.upperBound...].prefix { $0.isNumber })
        }
    }
    let listening = try #require(port, "fjord serve did not report its port")
    try await body(
        ServeProcess(
            address: "127.0.0.1:\(listening)", caPath: dataDirectory.path + "/certs/ca.pem",
            pid: process.processIdentifier, port: listening))
}
