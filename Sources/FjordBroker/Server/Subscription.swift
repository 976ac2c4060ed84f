import NIOPosix
import Logging
import FjordProto
import FjordProtocol
import FjordStorage
import NIOCore

/// A subscribe stream: pushes batches from `nextOffset` as they are appended, spending the
/// credit the client grants. At most one read is outstanding and nothing is read while the credit
/// is spent or the channel is not writable, so a subscriber that stops reading costs the broker at
/// most one message. Lives on the connection's event loop.
final class Subscription {
    private let streamID: UInt32
    private let topic: String
    private let partitionIndex: Int
    private let topicID: String
    private let maxBytes: Int
    private let handler: NIOLoopBound<ConnectionHandler>
    private let eventLoop: any EventLoop
    private var nextOffset: Int64
    private var credit: Int64
    private var reading = false
    private var watch: (Partition, Int)?
    private var cancelled = false

    init(
        streamID: UInt32, partition: Partition, offset: Int64, credit: Int64, maxBytes: Int, handler: ConnectionHandler,
        eventLoop: any EventLoop
    ) {
        self.streamID = streamID
        self.topic = partition.topic
        self.partitionIndex = partition.index
        self.topicID = partition.topicID
        self.nextOffset = offset
        self.credit = credit
        self.maxBytes = maxBytes
        self.handler = NIOLoopBound(handler, eventLoop: eventLoop)
        self.eventLoop = eventLoop
    }

    func addCredit(_ bytes: UInt64) {
        let (sum, overflow) = credit.addingReportingOverflow(Int64(clamping: bytes))
        credit = overflow ? .max : sum
        pump()
    }

    func resume() { pump() }

    func cancel() {
        cancelled = true
        if let (partition, token) = watch { partition.cancelWatch(token) }
        watch = nil
    }

    /// Sends as much as credit and writability allow, or waits for the next append.
    func pump() {
        guard !cancelled, !reading, credit > 0 else { return }
        let handler = self.handler.value
        guard let context = handler.context, context.channel.isWritable, handler.throttledUntil == nil else { return }
        if let (partition, token) = watch {
            partition.cancelWatch(token)
            watch = nil
        }
        let partition: Partition
        do throws(BrokerError) {
            partition = try handler.broker.registry.partition(topic: topic, index: partitionIndex)
            guard partition.topicID == topicID else {
                throw BrokerError(.unknownTopicOrPartition, "topic \"\(topic)\" was deleted (and created again)")
            }
        } catch {
            end(with: error)
            return
        }
        if partition.isClosed {
            // Being reconfigured: the reopened partition replaces it in the registry shortly.
            let subscription = NIOLoopBound(self, eventLoop: eventLoop)
            eventLoop.scheduleTask(in: .milliseconds(50)) { subscription.value.pump() }
            return
        }
        let end = partition.log.logEndOffset
        if nextOffset == end {
            // Caught up: wait for the next append, then check again in case one landed meanwhile.
            let subscription = NIOLoopBound(self, eventLoop: eventLoop)
            let eventLoop = self.eventLoop
            if let token = partition.watchNextAppend({ eventLoop.execute { subscription.value.pump() } }) {
                watch = (partition, token)
            }
            if partition.log.logEndOffset != end { pump() }
            return
        }
        reading = true
        let offset = nextOffset
        let maxBytes = Int(min(credit, Int64(self.maxBytes)))
        let allocator = context.channel.allocator
        let usesFileRegions = handler.usesFileRegions
        let subscription = NIOLoopBound(self, eventLoop: eventLoop)
        handler.fairStorageRead(cost: maxBytes, eventLoop: eventLoop) {
            Result { () throws(BrokerError) in
                try PartitionReader.subscribeResponse(
                    partition: partition, offset: offset, maxBytes: maxBytes, allocator: allocator,
                    usesFileRegions: usesFileRegions)
            }
        }.whenComplete { result in
            let subscription = subscription.value
            subscription.reading = false
            guard !subscription.cancelled else { return }
            switch result {
            case .failure(let error):
                subscription.end(with: BrokerError(.brokerShuttingDown, "the storage threads have stopped: \(error)"))
            case .success(.failure(let error)):
                subscription.end(with: error)
            case .success(.success(let read)):
                if let payload = read.payload {
                    subscription.credit -= Int64(read.recordBytes)
                    subscription.nextOffset = read.nextOffset
                    let handler = subscription.handler.value
                    handler.broker.metrics.bytesOut(read.recordBytes)
                    _ = handler.chargeQuota(.fetch, bytes: read.recordBytes)
                    handler.send(payload, streamID: subscription.streamID, method: Fjord_V1_Method.subscribe.id)
                }
                subscription.pump()
            }
        }
    }

    private func end(with error: BrokerError) {
        cancel()
        let handler = self.handler.value
        if handler.subscriptions[streamID] === self { handler.subscriptions[streamID] = nil }
        handler.logger.debug("subscription ended", metadata: ["stream": "\(streamID)", "error": "\(error)"])
        handler.sendError(error, streamID: streamID, method: Fjord_V1_Method.subscribe.id)
    }
}

extension ConnectionHandler {
    func subscribe(streamID: UInt32, payload: ByteBuffer) {
        guard let context else { return }
        let method = Fjord_V1_Method.subscribe.id
        let started = NIODeadline.now()
        do throws(BrokerError) {
            guard !broker.lifecycle.isStopping else { throw BrokerError(.brokerShuttingDown, "the broker is shutting down; reconnect") }
            let request: Fjord_V1_SubscribeRequest
            do { request = try Fjord_V1_SubscribeRequest(checkingWireTypes: payload) } catch {
                throw BrokerError(.malformedMessage, "not a valid SubscribeRequest: \(error)")
            }
            guard request.creditBytes > 0 else {
                throw BrokerError(.invalidRequest, "a subscription needs positive credit_bytes")
            }
            let partition = try broker.registry.partition(topic: request.topic, index: Int(request.partition))
            try partition.checkLeaderEpoch(request.leaderEpoch)
            let start = partition.log.logStartOffset
            let end = partition.log.logEndOffset
            guard request.offset >= start, request.offset <= end else {
                throw BrokerError(
                    .offsetOutOfRange,
                    "\(request.topic)-\(request.partition): offset \(request.offset) is outside the log, which holds offsets \(start) to \(end - 1) (log end \(end))")
            }
            let maxBytes = min(
                Int(request.maxBytes == 0 ? 1 << 20 : request.maxBytes), clientMaxFrameBytes - 1024)
            let subscription = Subscription(
                streamID: streamID, partition: partition, offset: request.offset,
                credit: Int64(clamping: request.creditBytes), maxBytes: max(maxBytes, 1), handler: self,
                eventLoop: context.eventLoop)
            subscriptions[streamID] = subscription
            record("subscribe", since: started, error: nil)
            subscription.pump()
        } catch {
            state.serverClosed(streamID)
            logger.debug("subscribe rejected", metadata: ["stream": "\(streamID)", "error": "\(error)"])
            sendError(error, streamID: streamID, method: method)
            record("subscribe", since: started, error: error)
        }
    }

    func subscribeCredit(streamID: UInt32, payload: ByteBuffer) {
        guard let subscription = subscriptions[streamID] else { return }
        guard payload.readableBytes > 0 else { return }
        do {
            let credit = try Fjord_V1_SubscribeCredit(checkingWireTypes: payload)
            subscription.addCredit(credit.bytes)
        } catch {
            subscriptions[streamID] = nil
            subscription.cancel()
            sendError(
                BrokerError(.malformedMessage, "not a valid SubscribeCredit: \(error)"), streamID: streamID,
                method: Fjord_V1_Method.subscribe.id)
        }
    }
}
