import FjordProto
import FjordProtocol
import FjordRecords
import FjordWire
import NIOCore
import SwiftProtobuf
import Synchronization

/// The sender: one task per producer that seals lingering batches, sends what the in-flight
/// window allows over one produce stream, and reads the answers.
extension FjordProducer {
    enum SenderStep {
        case exit
        case wait(Duration?)
        case initProducerID
        case send([(UInt64, Batch)])
        case refreshMetadata(Set<String>)
    }

    /// The produce stream the sender writes to, and which connection generation it belongs to.
    struct Link {
        var connection: FjordConnection
        var stream: FjordStream
        var generation: Int
    }

    func runSender() async {
        var link: Link?
        var connectAttempt = 0
        while true {
            let now = ContinuousClock.now
            let step = nextStep(now: now, hasLink: link != nil)
            switch step {
            case .exit:
                if let link { try? await link.stream.send(ByteBuffer(), endOfStream: true) }
                failEverything(FjordClientError(code: .invalidRequest, message: "the producer is closed", isRetriable: false))
                return
            case .wait(let timeout):
                let loop = link?.connection.eventLoop ?? client.connections.group.any()
                await wakeup.wait(timeout: timeout, eventLoop: loop)
            case .refreshMetadata(let topics):
                for topic in topics { _ = try? await client.refreshMetadata(topic: topic) }
            case .initProducerID:
                do {
                    var request = Fjord_V1_InitProducerIdRequest()
                    let (id, epoch) = state.withLock { ($0.producerID, $0.producerEpoch) }
                    request.producerID = id
                    request.producerEpoch = epoch
                    let response: Fjord_V1_InitProducerIdResponse = try await client.call(.initProducerID, request)
                    installProducerID(response.producerID, epoch: response.producerEpoch)
                } catch {
                    await backOff(&connectAttempt, error: error)
                }
            case .send(let batches):
                var current = link
                do {
                    if current == nil || !current!.connection.isActive {
                        if let stale = current { connectionLost(generation: stale.generation) }
                        let connection = try await client.connection()
                        let stream = connection.openStream(.produce)
                        let generation = state.withLock { state in
                            state.generation += 1
                            return state.generation
                        }
                        current = Link(connection: connection, stream: stream, generation: generation)
                        link = current
                        Task { [self] in await receive(on: stream, generation: generation) }
                    }
                    connectAttempt = 0
                    // Batches a lost connection put back in their queue meanwhile are not sent from here.
                    let generation = current!.generation
                    let stillOurs: Set<UInt64> = state.withLock { state in
                        var ids = Set<UInt64>()
                        for (id, _) in batches where state.inFlight[id] != nil {
                            state.inFlight[id]!.generation = generation
                            ids.insert(id)
                        }
                        return ids
                    }
                    try await send(batches.filter { stillOurs.contains($0.0) }, on: current!)
                } catch {
                    if let current {
                        await client.connections.invalidate(current.connection)
                        connectionLost(generation: current.generation)
                    }
                    link = nil
                    unsent(batches.map(\.0))
                    await backOff(&connectAttempt, error: error)
                }
            }
        }
    }

    private func backOff(_ attempt: inout Int, error: any Error) async {
        let delay = client.configuration.reconnect.delay(attempt: attempt)
        attempt += 1
        expireWhileUnreachable(error)
        try? await Task.sleep(for: delay)
    }

    /// Decides what the sender does next, under the lock: seals batches whose linger is up and
    /// takes what the window allows.
    func nextStep(now: ContinuousClock.Instant, hasLink: Bool) -> SenderStep {
        let (step, expired) = state.withLock { state -> (SenderStep, [(Batch, FjordClientError)]) in
            var expired: [(Batch, FjordClientError)] = []
            if state.closed && state.pendingRecords == 0 { return (.exit, expired) }
            if !state.topicsToRefresh.isEmpty {
                defer { state.topicsToRefresh = [] }
                return (.refreshMetadata(state.topicsToRefresh), expired)
            }
            if idempotent && (state.producerID < 0 || state.needsEpochBump) {
                if state.inFlight.isEmpty {
                    if state.needsEpochBump { state.needsEpochBump = false }
                    return (.initProducerID, expired)
                }
                return (.wait(nil), expired)
            }
            let flushing = !state.flushWaiters.isEmpty || state.closing
            var toSend: [(UInt64, Batch)] = []
            var nextDeadline: ContinuousClock.Instant?
            func consider(_ deadline: ContinuousClock.Instant) {
                nextDeadline = nextDeadline.map { min($0, deadline) } ?? deadline
            }
            for (key, queue) in state.partitions {
                if let open = queue.open {
                    let due = open.created + configuration.linger
                    if flushing || due <= now {
                        queue.ready.append(queue.open.take()!)
                        if state.sticky[key.topic] == key.partition { state.sticky[key.topic] = nil }
                    } else {
                        consider(due)
                    }
                }
                if let notBefore = queue.notBefore {
                    if notBefore > now {
                        consider(notBefore)
                        continue
                    }
                    queue.notBefore = nil
                }
                while !queue.recovering, queue.inFlight < configuration.maxInFlightPerPartition,
                    state.inFlight.count + toSend.count < configuration.maxInFlight, !queue.ready.isEmpty
                {
                    var batch = queue.ready.removeFirst()
                    if now - batch.created > configuration.deliveryTimeout {
                        if batch.sequence != nil { state.needsEpochBump = true }
                        expired.append((batch, Self.timedOut(batch, configuration.deliveryTimeout)))
                        continue
                    }
                    if idempotent && batch.sequence == nil {
                        batch.sequence = queue.nextSequence
                        queue.nextSequence = Int32(truncatingIfNeeded: (Int64(queue.nextSequence) + Int64(batch.recordCount)) % (Int64(Int32.max) + 1))
                        batch.built = nil
                    }
                    if batch.built == nil {
                        if idempotent {
                            batch.builder.producerID = state.producerID
                            batch.builder.producerEpoch = state.producerEpoch
                            batch.builder.baseSequence = batch.sequence!
                        }
                        batch.built = batch.builder.finish()
                    } else if batch.needsRestamp {
                        RecordBatchBuilder.restampProducer(
                            &batch.built!, producerID: state.producerID, producerEpoch: state.producerEpoch,
                            baseSequence: batch.sequence!)
                        batch.needsRestamp = false
                    }
                    batch.attempts += 1
                    state.statistics.requestsSent += 1
                    if batch.attempts > 1 { state.statistics.retries += 1 }
                    let id = state.nextRequestID
                    state.nextRequestID += 1
                    queue.inFlight += 1
                    toSend.append((id, batch))
                }
            }
            if !toSend.isEmpty {
                for (id, batch) in toSend { state.inFlight[id] = InFlight(id: id, batch: batch, generation: nil) }
                return (.send(toSend), expired)
            }
            return (.wait(nextDeadline.map { $0 - now }), expired)
        }
        for (batch, error) in expired { finish(batch, .failure(error)) }
        return step
    }

    /// Writes the batches as produce requests with one flush.
    func send(_ batches: [(UInt64, Batch)], on link: Link) async throws {
        let acks: Fjord_V1_Acks =
            switch configuration.acks {
            case .none: .none
            case .leader: .leader
            case .durable: .durable
            }
        var frames: [Frame] = []
        frames.reserveCapacity(batches.count)
        for (id, batch) in batches {
            let bytes = batch.built!
            let topic = batch.key.topic
            let partition = UInt32(batch.key.partition)
            var payload = ByteBuffer()
            payload.reserveCapacity(
                ProduceRequestView.headerSize(
                    topic: topic, partition: partition, leaderEpoch: -1, acks: acks, requestID: id,
                    batchBytes: bytes.readableBytes) + bytes.readableBytes)
            ProduceRequestView.write(
                topic: topic, partition: partition, leaderEpoch: -1, acks: acks, requestID: id, batch: bytes,
                to: &payload)
            frames.append(Frame(streamID: link.stream.id, method: Fjord_V1_Method.produce.id, flags: [], payload: payload))
        }
        try await link.connection.sendFrames(frames)
        if configuration.acks == .none {
            // No answer comes: written is done.
            for (id, batch) in batches {
                let wasInFlight = state.withLock { state in
                    guard state.inFlight.removeValue(forKey: id) != nil else { return false }
                    state.partitions[batch.key]?.inFlight -= 1
                    return true
                }
                if wasInFlight { finish(batch, .success((baseOffset: -1, duplicate: false))) }
            }
            wakeup.signal()
        }
    }

    /// Reads answers on one produce stream until it ends.
    func receive(on stream: FjordStream, generation: Int) async {
        do {
            while let frame = try await stream.next() {
                if frame.payload.readableBytes == 0 { continue }
                let response = try Fjord_V1_ProduceResponse(buffer: frame.payload)
                handle(response)
            }
        } catch {
            // The stream or connection failed; the sender notices and resends what is in flight.
        }
        connectionLost(generation: generation)
        wakeup.signal()
    }

    /// Applies one answer.
    func handle(_ response: Fjord_V1_ProduceResponse) {
        enum Outcome {
            case done(Batch, Result<(baseOffset: Int64, duplicate: Bool), FjordClientError>)
            case none
        }
        let outcome: Outcome = state.withLock { state in
            guard let entry = state.inFlight.removeValue(forKey: response.requestID) else { return .none }
            let batch = entry.batch
            let queue = state.queue(for: batch.key)
            queue.inFlight -= 1
            defer {
                if queue.inFlight == 0 { queue.recovering = false }
            }
            guard response.hasError, response.error.code != .none else {
                if response.duplicate { state.statistics.duplicatesAnswered += 1 }
                return .done(batch, .success((response.baseOffset, response.duplicate)))
            }
            let error = FjordClientError(response.error)
            let sequenceError = [.outOfOrderSequence, .unknownProducerID, .invalidProducerEpoch].contains(error.code)
            let expired = ContinuousClock.now - batch.created > configuration.deliveryTimeout
            if queue.recovering && sequenceError && !expired {
                // An earlier batch of this partition failed, so this one was out of order: send it again.
                queue.requeue(batch)
                return .none
            }
            if error.isRetriable && !expired {
                if [.unknownTopicOrPartition, .notLeader, .fencedLeaderEpoch].contains(error.code) {
                    state.topicsToRefresh.insert(batch.key.topic)
                }
                queue.requeue(batch)
                queue.recovering = queue.inFlight > 0
                queue.notBefore = ContinuousClock.now + client.configuration.reconnect.delay(attempt: batch.attempts)
                return .none
            }
            if idempotent && batch.sequence != nil { state.needsEpochBump = true }
            queue.recovering = queue.inFlight > 0
            return .done(batch, .failure(expired ? Self.timedOut(batch, configuration.deliveryTimeout, last: error) : error))
        }
        if case .done(let batch, let result) = outcome { finish(batch, result) }
        wakeup.signal()
    }

    /// Puts every batch written on the link of `generation` back in its queue, in sequence order.
    func connectionLost(generation: Int) {
        requeue { $0.generation == generation }
    }

    /// Puts batches taken for sending that never reached a link back in their queue.
    func unsent(_ ids: [UInt64]) {
        let set = Set(ids)
        requeue { entry in entry.generation == nil && set.contains(entry.id) }
    }

    private func requeue(where matches: (InFlight) -> Bool) {
        state.withLock { state in
            let lost = state.inFlight.filter { matches($0.value) }.values.sorted {
                ($0.batch.sequence ?? 0) > ($1.batch.sequence ?? 0)
            }
            guard !lost.isEmpty else { return }
            for entry in lost {
                state.inFlight[entry.id] = nil
                let queue = state.queue(for: entry.batch.key)
                queue.inFlight -= 1
                queue.requeue(entry.batch)
                if queue.inFlight == 0 { queue.recovering = false }
            }
        }
    }

    /// Records the new identity and restarts every partition's sequence at 0.
    func installProducerID(_ id: Int64, epoch: Int32) {
        state.withLock { state in
            state.statistics.producerIDRequests += 1
            state.producerID = id
            state.producerEpoch = epoch
            for queue in state.partitions.values {
                queue.nextSequence = 0
                for index in queue.ready.indices where queue.ready[index].sequence != nil {
                    queue.ready[index].sequence = nil
                    queue.ready[index].needsRestamp = true
                }
            }
        }
    }

    /// While no broker can be reached, fails batches past their delivery timeout.
    func expireWhileUnreachable(_ error: any Error) {
        let now = ContinuousClock.now
        let expired: [Batch] = state.withLock { state in
            var expired: [Batch] = []
            for queue in state.partitions.values {
                queue.ready.removeAll { batch in
                    guard now - batch.created > configuration.deliveryTimeout else { return false }
                    if batch.sequence != nil { state.needsEpochBump = true }
                    expired.append(batch)
                    return true
                }
            }
            return expired
        }
        for batch in expired {
            finish(
                batch,
                .failure(
                    FjordClientError(
                        code: .requestTimedOut,
                        message: "\(batch.recordCount) records for \(batch.key.topic)-\(batch.key.partition) were not delivered within \(configuration.deliveryTimeout): \(error)",
                        isRetriable: false)))
        }
    }

    static func timedOut(_ batch: Batch, _ timeout: Duration, last: FjordClientError? = nil) -> FjordClientError {
        FjordClientError(
            code: .requestTimedOut,
            message: "\(batch.recordCount) records for \(batch.key.topic)-\(batch.key.partition) were not delivered within \(timeout)"
                + (last.map { "; last error: \($0)" } ?? ""),
            isRetriable: false)
    }

    /// Completes a batch's records and releases its buffer space.
    func finish(_ batch: Batch, _ result: Result<(baseOffset: Int64, duplicate: Bool), FjordClientError>) {
        for (index, timestamp, reported, callback) in batch.callbacks {
            switch result {
            case .success(let appended):
                callback(
                    reported,
                    .success(
                        RecordMetadata(
                            topic: batch.key.topic, partition: batch.key.partition,
                            offset: appended.baseOffset < 0 ? -1 : appended.baseOffset + Int64(index), timestamp: timestamp)))
            case .failure(let error):
                callback(reported, .failure(error))
            }
        }
        let (space, flushed): ([CheckedContinuation<Void, Never>], [CheckedContinuation<Void, Never>]) = state.withLock { state in
            state.bufferedBytes -= batch.bytes
            state.pendingRecords -= batch.recordCount
            var space: [CheckedContinuation<Void, Never>] = []
            if state.bufferedBytes < configuration.bufferBytes { swap(&space, &state.spaceWaiters) }
            var flushed: [CheckedContinuation<Void, Never>] = []
            if state.pendingRecords == 0 { swap(&flushed, &state.flushWaiters) }
            return (space, flushed)
        }
        for waiter in space { waiter.resume() }
        for waiter in flushed { waiter.resume() }
    }

    /// Fails everything still buffered (the producer is stopping).
    func failEverything(_ error: FjordClientError) {
        let batches: [Batch] = state.withLock { state in
            var batches: [Batch] = state.inFlight.values.map(\.batch)
            state.inFlight = [:]
            for queue in state.partitions.values {
                batches += queue.ready
                if let open = queue.open { batches.append(open) }
                queue.ready = []
                queue.open = nil
            }
            return batches
        }
        for batch in batches { finish(batch, .failure(error)) }
    }
}
