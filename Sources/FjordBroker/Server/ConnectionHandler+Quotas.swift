import FjordProtocol
import FjordWire
import NIOCore

extension ConnectionHandler {
    /// Counts `bytes` against this client's `kind` quota (``ClientQuotas``). Over it, the
    /// connection is not read (and its subscriptions push nothing) for the throttle returned, in
    /// milliseconds, which the response reports as `throttle_time_ms`.
    func chargeQuota(_ kind: ClientQuotas.Kind, bytes: Int) -> UInt32 {
        let milliseconds = broker.quotas.record(kind, clientID: clientID, bytes: bytes)
        guard milliseconds > 0, let context, !closed else { return milliseconds }
        let until = NIODeadline.now() + .milliseconds(Int64(milliseconds))
        if let current = throttledUntil, current >= until { return milliseconds }
        throttledUntil = until
        throttleTimer?.cancel()
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        throttleTimer = context.eventLoop.scheduleTask(deadline: until) { handler.value.throttleEnded() }
        return milliseconds
    }

    private func throttleEnded() {
        throttledUntil = nil
        throttleTimer = nil
        guard !closed else { return }
        resumeReadingIfPossible()
        for subscription in subscriptions.values { subscription.resume() }
    }
}

extension PartitionReader.Response {
    /// The `throttle_time_ms` field of `FetchResponse` (field 15), added after the other fields
    /// (protobuf accepts fields in any order).
    static let throttleTimeField = 15

    /// Adds `throttle_time_ms` to a fetch response when it is not zero.
    mutating func appendThrottleTime(_ milliseconds: UInt32) {
        guard milliseconds > 0 else { return }
        var field = ByteBuffer()
        field.writeProtobufVarintField(Self.throttleTimeField, UInt64(milliseconds))
        if continuation.isEmpty {
            payload.writeBuffer(&field)
        } else {
            continuation.append(.buffer(field))
        }
    }
}
