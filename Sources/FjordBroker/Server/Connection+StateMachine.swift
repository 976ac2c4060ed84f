import FjordProto
import FjordProtocol
import FjordWire

/// The rules of one connection's frames, with no I/O: which frames may arrive when, which
/// streams are open, and what each frame means. ``ConnectionHandler`` performs the actions.
struct ConnectionStateMachine {
    enum Phase: Equatable {
        case awaitingHandshake
        case ready
        case closing
    }

    enum StreamKind: Equatable {
        case unary(Fjord_V1_Method)
        /// `clientDone` once the client sent END_STREAM: no more requests come.
        case produce(clientDone: Bool)
        case subscribe

        /// The method the stream was opened with.
        var method: Fjord_V1_Method {
            switch self {
            case .unary(let method): method
            case .produce: .produce
            case .subscribe: .subscribe
            }
        }
    }

    enum Action: Equatable {
        /// The handshake request (the payload is a `HandshakeRequest`).
        case handshake(streamID: UInt32)
        /// A unary request for `method`.
        case unary(streamID: UInt32, method: Fjord_V1_Method)
        /// A produce stream's frame: a `ProduceRequest` when the payload is not empty.
        case produce(streamID: UInt32, endOfStream: Bool)
        /// A new subscription (the payload is a `SubscribeRequest`).
        case subscribe(streamID: UInt32)
        /// More credit for an open subscription (the payload is a `SubscribeCredit`, possibly empty).
        case subscribeCredit(streamID: UInt32)
        /// The client abandoned the stream.
        case cancel(streamID: UInt32)
        /// Nothing to do (a cancel for a stream that already ended).
        case ignore
        /// Fail this stream with the error; the connection stays open.
        case streamError(streamID: UInt32, method: UInt16, BrokerError)
        /// Send the error on stream 0 and close the connection.
        case connectionError(BrokerError)
    }

    /// An open stream: its kind, and a token no other stream of the connection gets, so a late
    /// completion for a stream that ended is not taken for a newer stream reusing its id.
    struct OpenStream: Equatable {
        var kind: StreamKind
        let token: UInt64
    }

    private(set) var phase = Phase.awaitingHandshake
    private(set) var streams: [UInt32: OpenStream] = [:]
    private var nextToken: UInt64 = 1
    let maxStreams: Int

    init(maxStreams: Int = 1024) {
        self.maxStreams = maxStreams
    }

    static let unaryMethods: Set<Fjord_V1_Method> = [
        .getMetadata, .createTopic, .deleteTopic, .listTopics, .describeTopic, .createPartitions, .alterTopicConfig,
        .fetch, .listOffsets, .initProducerID, .createAcls, .listAcls, .deleteAcls,
    ]

    /// What to do with a frame that arrived with `header`.
    mutating func receive(_ header: FrameHeader) -> Action {
        let id = header.streamID
        let method = Fjord_V1_Method(id: header.method)
        let endOfStream = header.flags.contains(.endStream)
        switch phase {
        case .closing:
            return .ignore
        case .awaitingHandshake:
            guard method == .handshake, id != 0 else {
                phase = .closing
                return .connectionError(
                    BrokerError(.handshakeRequired, "the first frame must be a handshake (method 1) on a non-zero stream"))
            }
            return .handshake(streamID: id)
        case .ready:
            break
        }
        guard id != 0 else {
            phase = .closing
            return .connectionError(BrokerError(.invalidStream, "clients may not send frames on stream 0"))
        }
        if header.flags.contains(.cancel) || header.flags.contains(.error) {
            return streams.removeValue(forKey: id) == nil ? .ignore : .cancel(streamID: id)
        }
        if let kind = streams[id]?.kind {
            switch kind {
            case .produce(let clientDone) where method == .produce && !clientDone:
                if endOfStream { streams[id]?.kind = .produce(clientDone: true) }
                return .produce(streamID: id, endOfStream: endOfStream)
            case .subscribe where method == .subscribe:
                return .subscribeCredit(streamID: id)
            default:
                // The error ends the stream, so it carries the stream's method id (§3), not the frame's.
                streams[id] = nil
                return .streamError(
                    streamID: id, method: kind.method.id,
                    BrokerError(.invalidStream, "stream \(id) is open for \(kind) and cannot take this frame (method \(header.method))"))
            }
        }
        guard streams.count < maxStreams else {
            return .streamError(
                streamID: id, method: header.method,
                BrokerError(.invalidRequest, "too many open streams on this connection (limit \(maxStreams))"))
        }
        switch method {
        case .produce:
            open(id, .produce(clientDone: endOfStream))
            return .produce(streamID: id, endOfStream: endOfStream)
        case .subscribe:
            open(id, .subscribe)
            return .subscribe(streamID: id)
        case .handshake:
            return .streamError(streamID: id, method: header.method, BrokerError(.invalidRequest, "the handshake is already done"))
        case let unary where Self.unaryMethods.contains(unary):
            open(id, .unary(unary))
            return .unary(streamID: id, method: unary)
        default:
            return .streamError(
                streamID: id, method: header.method,
                BrokerError(.unknownMethod, "method id \(header.method) is not in the method table"))
        }
    }

    /// The handshake succeeded.
    mutating func handshakeCompleted() {
        if phase == .awaitingHandshake { phase = .ready }
    }

    /// The server sent the last frame of `streamID` (response, END_STREAM or ERROR).
    mutating func serverClosed(_ streamID: UInt32) {
        streams[streamID] = nil
    }

    private mutating func open(_ id: UInt32, _ kind: StreamKind) {
        streams[id] = OpenStream(kind: kind, token: nextToken)
        nextToken += 1
    }

    /// The token of open stream `streamID`, to check later with ``isOpen(_:token:)``.
    func token(of streamID: UInt32) -> UInt64? { streams[streamID]?.token }

    /// Whether the stream that had `token` is still open: a late response for a stream that ended
    /// (cancelled, failed, or replaced by a newer stream with the same id) is dropped.
    func isOpen(_ streamID: UInt32, token: UInt64) -> Bool { streams[streamID]?.token == token }

    /// The connection is going away; every later frame is ignored.
    mutating func close() { phase = .closing }
}
