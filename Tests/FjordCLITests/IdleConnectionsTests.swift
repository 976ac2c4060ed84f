import FjordClient
import FjordProto
import FjordTLS
import Foundation
import Testing

/// The broker process's memory with many idle TLS connections open.
@Suite struct IdleConnectionsTests {
    @Test func aThousandIdleConnectionsCostBoundedBrokerMemory() async throws {
        try await withServeProcess { broker in
            let before = try residentKilobytes(pid: broker.pid)
            let tls = ClientTLSConfiguration(trustRootsPath: broker.caPath)
            let connections = try await withThrowingTaskGroup(of: [FjordConnection].self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        var opened: [FjordConnection] = []
                        for _ in 0..<50 {
                            opened.append(try await FjordConnection.connect(host: "127.0.0.1", port: broker.port, tls: tls))
                        }
                        return opened
                    }
                }
                var all: [FjordConnection] = []
                for try await opened in group { all += opened }
                return all
            }
            #expect(connections.count == 1000)
            let allActive = connections.allSatisfy { $0.isActive }
            #expect(allActive)
            try await Task.sleep(for: .milliseconds(300))
            let after = try residentKilobytes(pid: broker.pid)
            let perConnection = Double(after - before) / 1000
            // Each idle connection holds a TLS session and small read buffers: tens of KB, not MBs.
            #expect(after - before < 128 * 1024, "RSS grew from \(before) KB to \(after) KB (\(perConnection) KB per connection)")
            print("idle connections: broker RSS \(before) KB -> \(after) KB, \(perConnection) KB per connection")
            // The broker still answers, on a new connection and on an old one.
            let listed = try runFjord(["topics", "list"] + broker.flags)
            #expect(listed.status == 0)
            _ = try await connections[0].unary(.listTopics, Fjord_V1_ListTopicsRequest(), as: Fjord_V1_ListTopicsResponse.self)
            for connection in connections { try? await connection.close() }
        }
    }
}

/// VmRSS of a process, in KB.
func residentKilobytes(pid: Int32) throws -> Int {
    let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
        let value = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else { throw CocoaError(.fileReadCorruptFile) }
    return value
}
