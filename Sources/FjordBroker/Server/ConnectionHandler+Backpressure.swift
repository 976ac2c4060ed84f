import FjordProto
import FjordWire
import NIOCore

/// The memory a connection holds, as ``ConnectionHandler`` enforces it: bytes queued toward the
/// client, record responses waiting for the broker budget, request bytes received, and the
/// deadline of a frame that started arriving. The rules are ``ConnectionWriteBudget``'s.
struct ConnectionBackpressure {
    /// The rules and counts.
    var budget: ConnectionWriteBudget
    /// Counts the bytes received, to tell how many form a partial frame.
    let meter: InboundByteMeter?
    /// Bytes of the frames received whole (header and payload).
    var consumedBytes = 0
    /// Record responses prepared while the broker budget was spent, oldest first.
    var held = CircularBuffer<HeldResponse>()
    /// Work waiting until a record response may be prepared, oldest first.
    var preparationWaiters = CircularBuffer<() -> Void>()
    /// Registered with the broker's queued-bytes budget while responses are held.
    var writeBudgetWaiter: UInt64?
    /// Registered with the broker's request budget while reading waits for it.
    var requestBudgetWaiter: UInt64?
    /// A flush was due while the channel was not writable (TLS only: the TLS handler would
    /// encrypt everything written into memory at once).
    var flushDeferred = false
    /// Fires `request.timeout.ms` after a partial frame started arriving.
    var frameTimer: Scheduled<Void>?
    /// ``consumedBytes`` when ``frameTimer`` was started: the partial frame it times.
    var frameTimerMark = 0

    /// A prepared record response waiting for the broker budget.
    struct HeldResponse {
        let frame: Frame
        let bytes: Int
        /// Whether the stream still wants it (not cancelled meanwhile).
        let isWanted: () -> Bool
        /// Called once the frame is written.
        let onQueued: () -> Void
    }

    init(limit: Int, meter: InboundByteMeter?) {
        self.budget = ConnectionWriteBudget(limit: limit)
        self.meter = meter
    }

    /// Bytes received that are not part of a whole frame yet.
    var partialFrameBytes: Int { max(0, (meter?.receivedBytes ?? 0) - consumedBytes) }
}

extension ConnectionHandler {
    // MARK: Writing, counted

    /// Writes `frame`, counting its bytes as queued (for the connection and the broker) until the
    /// socket takes them or the channel closes. `reserved`: the broker budget is charged already.
    func writeCounted(_ frame: Frame, reserved: Bool) {
        guard let context else { return }
        let bytes = FrameHeader.size + Int(frame.header.payloadLength)
        backpressure.budget.queued(bytes)
        let budget = broker.queuedBytes
        if !reserved { budget.add(bytes) }
        let written = context.eventLoop.makePromise(of: Void.self)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        written.futureResult.whenComplete { _ in
            budget.release(bytes)
            handler.value.wrote(bytes)
        }
        context.write(wrapOutboundOut(frame), promise: written)
    }

    private func wrote(_ bytes: Int) {
        if backpressure.budget.written(bytes) { resumeAfterWrites() }
    }

    /// Sends a response carrying records (fetch, subscription push) once the broker budget takes
    /// it; until then it is held and the connection reads and prepares nothing more. `isWanted` is
    /// asked again before a held response goes out; `onQueued` runs once it is written.
    func sendRecords(
        _ response: PartitionReader.Response, streamID: UInt32, method: UInt16, flags: FrameFlags = [],
        isWanted: @escaping () -> Bool, onQueued: @escaping () -> Void = {}
    ) {
        guard !closed else { return }
        let frame = Frame(
            streamID: streamID, method: method, flags: flags, payload: response.payload, continuation: response.continuation)
        let bytes = FrameHeader.size + Int(frame.header.payloadLength)
        if backpressure.held.isEmpty, reserveForRecords(bytes) {
            send(frame, reserved: true)
            onQueued()
            return
        }
        backpressure.budget.hold()
        backpressure.held.append(.init(frame: frame, bytes: bytes, isWanted: isWanted, onQueued: onQueued))
        waitForWriteBudget()
    }

    /// Charges a record response to the broker budget, or to the connection's allowance.
    private func reserveForRecords(_ bytes: Int) -> Bool {
        switch backpressure.budget.charge(for: bytes) {
        case .allowance:
            broker.queuedBytes.add(bytes)
            return true
        case .brokerBudget:
            return broker.queuedBytes.tryReserve(bytes)
        }
    }

    private func waitForWriteBudget() {
        guard backpressure.writeBudgetWaiter == nil, let context else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        backpressure.writeBudgetWaiter = broker.queuedBytes.notifyWhenRoom {
            eventLoop.execute { handler.value.writeBudgetHasRoom() }
        }
    }

    private func writeBudgetHasRoom() {
        backpressure.writeBudgetWaiter = nil
        sendHeldResponses()
    }

    /// Sends the held responses the broker budget takes now, oldest first.
    private func sendHeldResponses() {
        guard !closed else { return }
        while let next = backpressure.held.first {
            backpressure.budget.unhold()
            if !next.isWanted() {
                backpressure.held.removeFirst()
                continue
            }
            guard reserveForRecords(next.bytes) else {
                backpressure.budget.hold()
                waitForWriteBudget()
                return
            }
            backpressure.held.removeFirst()
            send(next.frame, reserved: true)
            next.onQueued()
        }
        resumeAfterWrites()
    }

    // MARK: Preparing record responses

    /// Runs `body` once the connection may prepare a record response (at once if it may now):
    /// `body` calls ``beginPreparing(estimate:)`` if it starts reading. Waiting work runs in the
    /// order it arrived.
    func whenMayPrepare(_ body: @escaping () -> Void) {
        if backpressure.budget.mayPrepare && backpressure.preparationWaiters.isEmpty {
            body()
        } else {
            backpressure.preparationWaiters.append(body)
        }
    }

    /// A record response of about `estimate` bytes is being read.
    func beginPreparing(estimate: Int) {
        backpressure.budget.beginPreparing(estimate: estimate)
    }

    /// The read estimated at `estimate` bytes is done (its response sent, held or dropped).
    func endPreparing(estimate: Int) {
        backpressure.budget.endPreparing(estimate: estimate)
        resumeAfterWrites()
    }

    /// Resumes reading requests and preparing responses as far as the budget allows.
    func resumeAfterWrites() {
        guard !closed else { return }
        while backpressure.budget.mayPrepare, let next = backpressure.preparationWaiters.popFirst() {
            next()
        }
        resumeReadingIfPossible()
    }

    // MARK: Flushing

    /// Whether a flush should wait for writability: with TLS, a flush encrypts everything written
    /// into memory at once, so data stays unflushed (views of the log) until the socket drains.
    /// Without TLS writes count against writability before a flush, so they never wait.
    var shouldDeferFlush: Bool {
        guard let context, !usesFileRegions else { return false }
        return !context.channel.isWritable
    }

    /// Flushes a flush deferred while the channel was not writable.
    func flushDeferredIfWritable() {
        guard backpressure.flushDeferred, !shouldDeferFlush else { return }
        backpressure.flushDeferred = false
        context?.flush()
    }

    // MARK: Request bytes

    /// Why reading requests waits now, registering for the broker request budget if that is why.
    func readBlocker() -> ConnectionWriteBudget.ReadBlocker? {
        let blocker = backpressure.budget.readBlocker(requestBudgetHasRoom: broker.requestBytes.hasRoom)
        if blocker == .requestBudget, backpressure.requestBudgetWaiter == nil, let context {
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            backpressure.requestBudgetWaiter = broker.requestBytes.notifyWhenRoom {
                eventLoop.execute {
                    handler.value.backpressure.requestBudgetWaiter = nil
                    handler.value.resumeReadingIfPossible()
                }
            }
        }
        return blocker
    }

    /// Charges the request bytes held now (partial frame, appends in flight) to the broker.
    func updateRequestBytes() {
        let held = closed ? 0 : backpressure.partialFrameBytes + inFlightBytes
        let change = backpressure.budget.holdRequestBytes(held)
        if change > 0 {
            broker.requestBytes.add(change)
        } else if change < 0 {
            broker.requestBytes.release(-change)
        }
    }

    /// A whole frame of `payloadBytes` arrived.
    func frameReceived(payloadBytes: Int) {
        backpressure.consumedBytes += FrameHeader.size + payloadBytes
    }

    /// After a read: times a partial frame (it must complete within `request.timeout.ms`) and
    /// charges the request bytes.
    func checkPartialFrame() {
        updateRequestBytes()
        guard !closed, backpressure.partialFrameBytes > 0 else {
            backpressure.frameTimer?.cancel()
            backpressure.frameTimer = nil
            return
        }
        if backpressure.frameTimer != nil && backpressure.frameTimerMark == backpressure.consumedBytes { return }
        startFrameTimer()
    }

    private func startFrameTimer() {
        guard let context else { return }
        backpressure.frameTimer?.cancel()
        backpressure.frameTimerMark = backpressure.consumedBytes
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        backpressure.frameTimer = context.eventLoop.scheduleTask(
            in: .milliseconds(Int64(broker.configuration.requestTimeoutMilliseconds))
        ) { handler.value.frameTimedOut() }
    }

    private func frameTimedOut() {
        backpressure.frameTimer = nil
        let partial = backpressure.partialFrameBytes
        guard !closed, partial > 0, backpressure.frameTimerMark == backpressure.consumedBytes else { return }
        let brokerPaused =
            inFlightBytes >= broker.configuration.maxInFlightBytesPerConnection || throttledUntil != nil
            || (storageTurns?.isFull ?? false)
        if readPending && brokerPaused {
            // Reading waits for the broker: its own appends, this connection's turns at the
            // storage threads, or a quota throttle it asked the client to honour. The frame cannot
            // complete, and that is not the client's doing. (Waiting because the client does not
            // read its responses, or because partial frames fill the request budget, does count:
            // that is how a budget held by stalled frames frees up.)
            startFrameTimer()
            return
        }
        let timeout = broker.configuration.requestTimeoutMilliseconds
        closeWithError(
            BrokerError(
                .requestTimedOut,
                "a frame did not complete within \(timeout) ms of its first bytes (request.timeout.ms); \(partial) bytes of it arrived"
            ))
    }

    /// Releases what the connection holds: its request bytes, held responses and waiters.
    func releaseBackpressure() {
        backpressure.frameTimer?.cancel()
        backpressure.frameTimer = nil
        if let id = backpressure.writeBudgetWaiter { broker.queuedBytes.cancelNotification(id) }
        if let id = backpressure.requestBudgetWaiter { broker.requestBytes.cancelNotification(id) }
        backpressure.writeBudgetWaiter = nil
        backpressure.requestBudgetWaiter = nil
        backpressure.held.removeAll()
        backpressure.preparationWaiters.removeAll()
        updateRequestBytes()
    }
}
