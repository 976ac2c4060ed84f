import Logging
import FjordProto
import FjordProtocol
import FjordStorage
import FjordWire
import NIOCore

/// One produce stream's acks, kept in request order.
struct ProduceStream {
    enum Slot {
        case pending
        /// The response to send; `nil` for a success with acks=none.
        case done(Fjord_V1_ProduceResponse?)
    }
    /// The stream's token (``ConnectionStateMachine/token(of:)``): completions of a stream that
    /// ended are not taken for a newer stream with the same id.
    let token: UInt64
    /// Slots for requests not yet answered, oldest first; `firstSequence` is the oldest's number.
    var slots = CircularBuffer<Slot>(initialCapacity: 16)
    var firstSequence: UInt64 = 0
    var clientDone = false

    var nextSequence: UInt64 { firstSequence + UInt64(slots.count) }
}

extension ConnectionHandler {
    func produce(streamID: UInt32, payload: ByteBuffer, endOfStream: Bool) {
        guard let token = state.token(of: streamID) else { return }
        var stream = produceStreams[streamID].flatMap { $0.token == token ? $0 : nil } ?? ProduceStream(token: token)
        if endOfStream { stream.clientDone = true }
        guard payload.readableBytes > 0 else {
            produceStreams[streamID] = stream
            finishProduceStreamIfDone(streamID)
            return
        }
        let started = NIODeadline.now()
        guard let request = ProduceRequestView(parsing: payload) else {
            produceStreams[streamID] = nil
            let error = BrokerError(.malformedMessage, "a frame on produce stream \(streamID) is not a valid ProduceRequest")
            broker.logLimiter.log(logger, .info, "produce stream failed", metadata: ["stream": "\(streamID)", "error": "\(error)"])
            sendError(error, streamID: streamID, method: Fjord_V1_Method.produce.id)
            record("produce", since: started, error: error)
            return
        }
        let sequence = stream.nextSequence
        stream.slots.append(.pending)
        produceStreams[streamID] = stream

        let partition: Partition
        do throws(BrokerError) {
            guard !broker.lifecycle.isStopping else { throw BrokerError(.brokerShuttingDown, "the broker is shutting down; reconnect") }
            try authorization.require(.write, .topic, request.topic)
            partition = try broker.registry.partition(topic: request.topic, index: Int(request.partition))
            try partition.checkLeaderEpoch(request.leaderEpoch)
        } catch {
            if error.code == .unknownTopicOrPartition, broker.configuration.autoCreateTopics,
                broker.registry.partitionCount(topic: request.topic) == nil, mayAutoCreate(request.topic)
            {
                autoCreateThenProduce(request, streamID: streamID, token: token, sequence: sequence, started: started)
                return
            }
            completeProduce(streamID: streamID, token: token, sequence: sequence, request: request, result: .failure(error), started: started)
            return
        }
        append(request, to: partition, streamID: streamID, token: token, sequence: sequence, started: started)
    }

    private func append(
        _ request: ProduceRequestView, to partition: Partition, streamID: UInt32, token: UInt64, sequence: UInt64,
        started: NIODeadline
    ) {
        guard let context, let storageTurns else { return }
        let bytes = request.batch.readableBytes
        inFlightBytes += bytes
        let lifecycle = broker.lifecycle
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let durability: AppendDurability = request.acks == .durable ? .durable : .written
        let topic = partition.topic
        let index = partition.index
        let release = storageTurns.release
        // The append waits for this connection's turn at the storage threads (FairScheduler).
        storageTurns.run(cost: bytes) {
            lifecycle.appendStarted()
            partition.append(request.batch, durability: durability) { result in
                release()
                lifecycle.appendFinished()
                let mapped = result.mapError { partition.error(for: $0) }
                eventLoop.execute {
                    let handler = handler.value
                    handler.inFlightBytes -= bytes
                    if case .success(let appended) = mapped {
                        handler.broker.metrics.bytesIn(bytes)
                        handler.broker.metrics.setLogEndOffset(topic: topic, partition: index, offset: appended.lastOffset + 1)
                    }
                    handler.completeProduce(
                        streamID: streamID, token: token, sequence: sequence, request: request, result: mapped,
                        started: started)
                    handler.resumeReadingIfPossible()
                }
            }
        } cancel: {
            // The connection closed before its turn came: nothing was appended.
            handler.value.inFlightBytes -= bytes
        }
    }

    /// Whether the principal may create `topic` (on the cluster, or on the topic's name).
    private func mayAutoCreate(_ topic: String) -> Bool {
        guard broker.authorizer.isEnabled else { return true }
        do throws(BrokerError) {
            try authorization.require(.create, .cluster)
            return true
        } catch {
            do throws(BrokerError) {
                try authorization.require(.create, .topic, topic)
                return true
            } catch {
                return false
            }
        }
    }

    private func autoCreateThenProduce(
        _ request: ProduceRequestView, streamID: UInt32, token: UInt64, sequence: UInt64, started: NIODeadline
    ) {
        guard let context else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let topics = broker.topics
        let partitions = broker.configuration.autoCreatePartitions
        context.eventLoop.makeFutureWithTask { () async -> BrokerError? in
            do throws(BrokerError) {
                _ = try await topics.create(name: request.topic, partitions: partitions, configs: [:])
                return nil
            } catch {
                return error.code == .topicAlreadyExists ? nil : error
            }
        }.whenSuccess { error in
            let handler = handler.value
            do throws(BrokerError) {
                if let error { throw error }
                let partition = try handler.broker.registry.partition(topic: request.topic, index: Int(request.partition))
                try partition.checkLeaderEpoch(request.leaderEpoch)
                handler.append(request, to: partition, streamID: streamID, token: token, sequence: sequence, started: started)
            } catch {
                handler.completeProduce(
                    streamID: streamID, token: token, sequence: sequence, request: request, result: .failure(error), started: started)
            }
        }
    }

    /// Records the outcome of request `sequence` and sends every answer now at the head, in order.
    func completeProduce(
        streamID: UInt32, token: UInt64, sequence: UInt64, request: ProduceRequestView,
        result: Result<AppendResult, BrokerError>, started: NIODeadline
    ) {
        var response: Fjord_V1_ProduceResponse?
        let throttle = chargeQuota(.produce, bytes: request.batch.readableBytes)
        switch result {
        case .success(let appended):
            record("produce", since: started, error: nil)
            if request.acks != .none {
                var ack = Fjord_V1_ProduceResponse()
                ack.requestID = request.requestID
                ack.baseOffset = appended.baseOffset
                ack.lastOffset = appended.lastOffset
                ack.logAppendTime = appended.logAppendTime
                ack.logStartOffset = appended.logStartOffset
                ack.duplicate = appended.duplicate
                ack.throttleTimeMs = throttle
                response = ack
            }
        case .failure(let error):
            record("produce", since: started, error: error)
            logger.debug("produce failed", metadata: ["topic": "\(request.topic)", "partition": "\(request.partition)", "error": "\(error)"])
            var ack = Fjord_V1_ProduceResponse()
            ack.requestID = request.requestID
            ack.error = error.wireValue
            ack.throttleTimeMs = throttle
            response = ack
        }
        // Cancelled or failed meanwhile (and perhaps replaced by a newer stream with the same id).
        // Taken out of the dictionary while changed, so its slots are not copied (they can be many).
        guard var stream = produceStreams.removeValue(forKey: streamID) else { return }
        let position = Int(truncatingIfNeeded: sequence &- stream.firstSequence)
        guard stream.token == token, sequence >= stream.firstSequence, position < stream.slots.count else {
            produceStreams[streamID] = stream
            return
        }
        stream.slots[stream.slots.index(stream.slots.startIndex, offsetBy: position)] = .done(response)
        while let first = stream.slots.first, case .done(let answer) = first {
            stream.slots.removeFirst()
            stream.firstSequence += 1
            if let answer { send(answer, streamID: streamID, method: Fjord_V1_Method.produce.id) }
        }
        produceStreams[streamID] = stream
        finishProduceStreamIfDone(streamID)
    }

    /// Ends the stream once the client has sent END_STREAM and every request is answered.
    func finishProduceStreamIfDone(_ streamID: UInt32) {
        guard let stream = produceStreams[streamID], stream.clientDone, stream.slots.isEmpty else { return }
        produceStreams[streamID] = nil
        send(ByteBuffer(), streamID: streamID, method: Fjord_V1_Method.produce.id, flags: .endStream)
    }
}
