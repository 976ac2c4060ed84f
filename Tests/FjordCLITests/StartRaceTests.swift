import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Clients that connect while `fjord serve` is starting: a broker used to crash (a force-unwrap on
/// the accept path, about 3% of starts) when a connection arrived between binding its listener and
/// setting up what connections use. Each start here has a client connecting every 10 ms from the
/// moment the process is spawned until the broker has started, and then a few more times.
@Suite struct StartRaceTests {
    /// Starts per run: `FJORD_START_RACE_RUNS` (the hardening issue's figure is 200).
    static let runs = ProcessInfo.processInfo.environment["FJORD_START_RACE_RUNS"].flatMap(Int.init) ?? 200

    @Test func clientsConnectingFromSpawnNeverCrashTheBroker() async throws {
        try await withTemporaryDirectory { directory in
            var connectionsAccepted = 0
            for run in 0..<Self.runs {
                let port = try freeLoopbackPort()
                let process = Process()
                process.executableURL = try fjordExecutable()
                process.arguments = [
                    "serve", "--data-dir", directory.path + "/data", "--listen", "127.0.0.1:\(port)",
                    "--operations-listen", "off", "--log-level", "warning",
                ]
                let output = directory.appendingPathComponent("serve-\(run).out")
                FileManager.default.createFile(atPath: output.path, contents: nil)
                process.standardOutput = try FileHandle(forWritingTo: output)
                process.standardError = try FileHandle(forWritingTo: output)
                try process.run()

                var started = false
                var connectsAfterStart = 0
                let deadline = ContinuousClock.now + .seconds(30)
                while process.isRunning, connectsAfterStart < 5, ContinuousClock.now < deadline {
                    if connectOnce(port: port) { connectionsAccepted += 1 }
                    if !started {
                        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
                        started = text.contains("broker listening on")
                    } else {
                        connectsAfterStart += 1
                    }
                    try await Task.sleep(for: .milliseconds(10))
                }
                let crashed = !process.isRunning
                if process.isRunning { process.terminate() }
                process.waitUntilExit()
                let log = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
                #expect(!crashed, "start \(run): fjord serve exited during start-up (status \(process.terminationStatus)):\n\(log)")
                #expect(started, "start \(run): fjord serve did not report it was listening:\n\(log)")
                #expect(process.terminationReason == .exit && process.terminationStatus == 0, "start \(run): \(log)")
                if crashed || !started { return }
            }
            // Every start was reached by a connection at least once after the broker listened.
            #expect(connectionsAccepted >= Self.runs)
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EMFILE) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw POSIXError(.EADDRINUSE) }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Opens a TCP connection to 127.0.0.1:`port`, writes a few bytes (the start of a TLS record) and
/// closes it. Returns whether the connection was established.
func connectOnce(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
    if connected {
        let hello: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0x05]
        _ = hello.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }
    return connected
}
