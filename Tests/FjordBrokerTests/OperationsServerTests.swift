import FjordBroker
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A parsed HTTP/1.1 response read from a raw socket.
private struct RawResponse {
    var status: Int
    var headers: [(String, String)]
    var body: String

    func header(_ name: String) -> String? {
        self.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// Collects every byte the server sends until it closes the connection.
private final class ReadToEOFHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var received = ByteBuffer()
    private var done: EventLoopPromise<ByteBuffer>?
    private var firstRead: EventLoopPromise<Void>?

    init(done: EventLoopPromise<ByteBuffer>, firstRead: EventLoopPromise<Void>? = nil) {
        self.done = done
        self.firstRead = firstRead
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = self.unwrapInboundIn(data)
        self.received.writeBuffer(&chunk)
        self.firstRead?.succeed()
        self.firstRead = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.done?.succeed(self.received)
        self.firstRead?.fail(ChannelError.eof)
        (self.done, self.firstRead) = (nil, nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.done?.fail(error)
        self.firstRead?.fail(error)
        (self.done, self.firstRead) = (nil, nil)
        context.close(promise: nil)
    }
}

/// A started server plus what the tests need around it.
private struct Fixture {
    let group: MultiThreadedEventLoopGroup
    let metrics: BrokerMetrics
    let server: OperationsServer
    let healthy: Box<Atomic<Bool>>
    let port: Int

    static func start() async throws -> Fixture {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let metrics = BrokerMetrics()
        let healthy = Box(Atomic(true))
        let server = OperationsServer(
            host: "127.0.0.1",
            port: 0,
            metrics: metrics,
            health: {
                HealthStatus(isHealthy: healthy.value.load(ordering: .relaxed), details: ["broker_id": "7"])
            },
            group: group,
            logger: Logger(label: "fjord.test.operations")
        )
        try await server.start()
        let port = try #require(server.port)
        #expect(port > 0)
        return Fixture(group: group, metrics: metrics, server: server, healthy: healthy, port: port)
    }

    func setHealthy(_ value: Bool) {
        self.healthy.value.store(value, ordering: .relaxed)
    }

    /// Opens a connection, sends `raw`, and returns everything received until the server closes it.
    func exchange(_ raw: String) async throws -> String {
        let channel = try await self.connect()
        let done = channel.eventLoop.makePromise(of: ByteBuffer.self)
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(ReadToEOFHandler(done: done))
        }.get()
        try await channel.writeAndFlush(ByteBuffer(string: raw)).get()
        let bytes = try await done.futureResult.get()
        return String(buffer: bytes)
    }

    func connect() async throws -> any Channel {
        try await ClientBootstrap(group: self.group).connect(host: "127.0.0.1", port: self.port).get()
    }

    func request(_ method: String, _ path: String) async throws -> RawResponse {
        let text = try await self.exchange("\(method) \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let responses = try parseResponses(text)
        try #require(responses.count == 1)
        return responses[0]
    }

    func shutdown() async throws {
        try await self.server.stop()
        try await self.group.shutdownGracefully()
    }
}

/// `Atomic` is not copyable; a class lets the health closure and the fixture share one.
private final class Box<Value: ~Copyable>: Sendable where Value: Sendable {
    let value: Value
    init(_ value: consuming Value) { self.value = value }
}

private struct ParseError: Error {
    let message: String
}

/// Parses one or more `Content-Length`-delimited HTTP/1.1 responses.
private func parseResponses(_ text: String, headRequest: Bool = false) throws -> [RawResponse] {
    var bytes = Substring(text).utf8[...]
    var responses: [RawResponse] = []
    while !bytes.isEmpty {
        guard let headerEnd = bytes.firstRange(of: "\r\n\r\n".utf8) else {
            throw ParseError(message: "no header terminator in \(text)")
        }
        let headerText = String(decoding: bytes[bytes.startIndex..<headerEnd.lowerBound], as: UTF8.self)
        bytes = bytes[headerEnd.upperBound...]
        var lines = headerText.split(separator: "\r\n").map(String.init)
        guard !lines.isEmpty else { throw ParseError(message: "empty head") }
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            throw ParseError(message: "bad status line in \(headerText)")
        }
        let headers = lines.compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (
                String(line[..<colon]),
                String(line[line.index(after: colon)...]).trimmingPrefix(" ").description
            )
        }
        let length =
            headRequest
            ? 0 : Int(headers.first { $0.0.lowercased() == "content-length" }?.1 ?? "0") ?? 0
        guard bytes.count >= length else { throw ParseError(message: "short body") }
        let bodyEnd = bytes.index(bytes.startIndex, offsetBy: length)
        let body = String(decoding: bytes[bytes.startIndex..<bodyEnd], as: UTF8.self)
        bytes = bytes[bodyEnd...]
        responses.append(RawResponse(status: status, headers: headers, body: body))
    }
    return responses
}

@Suite("OperationsServer")
struct OperationsServerTests {
    @Test("GET /metrics exposes request, byte, connection, offset and flush metrics")
    func metricsEndpoint() async throws {
        let fixture = try await Fixture.start()
        let metrics = fixture.metrics
        metrics.requestCompleted(api: "produce", durationNanoseconds: 20_000, errorCode: nil)
        metrics.requestCompleted(api: "produce", durationNanoseconds: 1_500_000, errorCode: "not_leader")
        metrics.requestCompleted(api: "fetch", durationNanoseconds: 3_000, errorCode: nil)
        metrics.requestCompleted(api: "bogus", durationNanoseconds: 3_000, errorCode: nil)
        metrics.bytesIn(1_000)
        metrics.bytesIn(24)
        metrics.bytesOut(512)
        metrics.bytesOut(-5)
        metrics.connectionOpened()
        metrics.connectionOpened()
        metrics.connectionClosed()
        metrics.connectionRejected()
        metrics.setLogEndOffset(topic: "orders", partition: 0, offset: 42)
        metrics.setLogStartOffset(topic: "orders", partition: 0, offset: 7)
        metrics.setLogEndOffset(topic: "orders", partition: 1, offset: 3)
        metrics.flushCompleted(durationNanoseconds: 2_000_000)

        let response = try await fixture.request("GET", "/metrics")
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        let body = response.body
        let lines = Set(body.split(separator: "\n").map(String.init))

        #expect(lines.contains(#"fjord_requests_total{api="produce"} 2"#))
        #expect(lines.contains(#"fjord_requests_total{api="fetch"} 1"#))
        #expect(lines.contains(#"fjord_requests_total{api="list_offsets"} 0"#))
        #expect(lines.contains(#"fjord_requests_total{api="unknown"} 1"#))
        #expect(lines.contains("# TYPE fjord_requests_total counter"))
        #expect(lines.contains(#"fjord_request_errors_total{api="produce",code="not_leader"} 1"#))
        #expect(lines.contains("# TYPE fjord_request_duration_seconds histogram"))
        #expect(lines.contains(#"fjord_request_duration_seconds_bucket{api="produce",le="0.00001"} 0"#))
        #expect(lines.contains(#"fjord_request_duration_seconds_bucket{api="produce",le="0.000025"} 1"#))
        #expect(lines.contains(#"fjord_request_duration_seconds_bucket{api="produce",le="0.0025"} 2"#))
        #expect(lines.contains(#"fjord_request_duration_seconds_bucket{api="produce",le="10.0"} 2"#))
        #expect(lines.contains(#"fjord_request_duration_seconds_bucket{api="produce",le="+Inf"} 2"#))
        #expect(lines.contains(#"fjord_request_duration_seconds_count{api="produce"} 2"#))
        #expect(lines.contains(#"fjord_request_duration_seconds_sum{api="produce"} 0.00152"#))
        #expect(lines.contains("fjord_bytes_in_total 1024"))
        #expect(lines.contains("fjord_bytes_out_total 512"))
        #expect(lines.contains("fjord_connections_active 1.0"))
        #expect(lines.contains("fjord_connections_total 2"))
        #expect(lines.contains("fjord_connections_rejected_total 1"))
        #expect(lines.contains("# TYPE fjord_log_end_offset gauge"))
        #expect(lines.contains(#"fjord_log_end_offset{topic="orders",partition="0"} 42.0"#))
        #expect(lines.contains(#"fjord_log_end_offset{topic="orders",partition="1"} 3.0"#))
        #expect(lines.contains(#"fjord_log_start_offset{topic="orders",partition="0"} 7.0"#))
        #expect(lines.contains(#"fjord_storage_flush_duration_seconds_bucket{le="0.0025"} 1"#))
        #expect(lines.contains("fjord_storage_flush_duration_seconds_count 1"))

        metrics.removePartition(topic: "orders", partition: 0)
        let afterRemoval = try await fixture.request("GET", "/metrics").body
        #expect(!afterRemoval.contains(#"partition="0""#))
        #expect(afterRemoval.contains(#"fjord_log_end_offset{topic="orders",partition="1"} 3.0"#))

        try await fixture.shutdown()
    }

    @Test("HEAD /metrics returns the headers without a body")
    func headMetrics() async throws {
        let fixture = try await Fixture.start()
        let text = try await fixture.exchange("HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let responses = try parseResponses(text, headRequest: true)
        let response = try #require(responses.count == 1 ? responses[0] : nil)
        #expect(response.status == 200)
        #expect(response.body.isEmpty)
        let length = try #require(response.header("Content-Length").flatMap { Int($0) })
        #expect(length == fixture.metrics.renderBytes().count)
        try await fixture.shutdown()
    }

    @Test("GET /health is 200 while healthy and 503 once the closure reports unhealthy")
    func healthEndpoint() async throws {
        let fixture = try await Fixture.start()
        let ok = try await fixture.request("GET", "/health")
        #expect(ok.status == 200)
        #expect(ok.header("Content-Type") == "application/json")
        #expect(ok.body == "{\"status\":\"ok\",\"broker_id\":\"7\"}\n")

        fixture.setHealthy(false)
        let down = try await fixture.request("GET", "/health?verbose=1")
        #expect(down.status == 503)
        #expect(down.body == "{\"status\":\"shutting_down\",\"broker_id\":\"7\"}\n")
        try await fixture.shutdown()
    }

    @Test("unknown paths are 404, other methods 405")
    func errorStatuses() async throws {
        let fixture = try await Fixture.start()
        #expect(try await fixture.request("GET", "/nope").status == 404)

        let post = try await fixture.exchange(
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        let response = try #require(try parseResponses(post).first)
        #expect(response.status == 405)
        #expect(response.header("Allow") == "GET, HEAD")
        try await fixture.shutdown()
    }

    @Test("keep-alive serves several pipelined requests on one connection")
    func keepAlive() async throws {
        let fixture = try await Fixture.start()
        let text = try await fixture.exchange(
            "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                + "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                + "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let responses = try parseResponses(text)
        #expect(responses.map(\.status) == [200, 404, 200])
        #expect(responses.last?.header("Connection") == "close")
        try await fixture.shutdown()
    }

    @Test("stop closes open connections and refuses new ones")
    func stopClosesConnections() async throws {
        let fixture = try await Fixture.start()
        let channel = try await fixture.connect()
        let done = channel.eventLoop.makePromise(of: ByteBuffer.self)
        let firstRead = channel.eventLoop.makePromise(of: Void.self)
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(ReadToEOFHandler(done: done, firstRead: firstRead))
        }.get()
        // An idle keep-alive connection with one answered request.
        try await channel.writeAndFlush(ByteBuffer(string: "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")).get()
        try await firstRead.futureResult.get()

        try await fixture.server.stop()
        let received = String(buffer: try await done.futureResult.get())
        #expect(received.hasPrefix("HTTP/1.1 200 OK"))
        #expect(fixture.server.port == nil)
        await #expect(throws: (any Error).self) { _ = try await fixture.connect() }
        await #expect(throws: OperationsServerError.stopped) { try await fixture.server.start() }

        try await fixture.server.stop()  // idempotent
        try await fixture.group.shutdownGracefully()
    }
}
