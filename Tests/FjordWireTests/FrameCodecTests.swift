import FjordWire
import Foundation
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Synchronization
import Testing

@Suite struct FrameCodecTests {
    private func frame(_ stream: UInt32, _ method: UInt16, _ flags: FrameFlags = [], _ payload: String) -> Frame {
        Frame(streamID: stream, method: method, flags: flags, payload: ByteBuffer(string: payload))
    }

    private func bytes(_ frames: [Frame]) -> ByteBuffer {
        var buffer = ByteBuffer()
        for frame in frames {
            frame.header.write(to: &buffer)
            buffer.writeImmutableBuffer(frame.payload)
        }
        return buffer
    }

    @Test func headerLayoutIsBigEndianTwelveBytes() {
        var buffer = ByteBuffer()
        FrameHeader(payloadLength: 0x0102_0304, streamID: 0x0A0B_0C0D, method: 0x0E0F, flags: [.endStream, .cancel])
            .write(to: &buffer)
        #expect(Array(buffer.readableBytesView) == [1, 2, 3, 4, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x05, 0x00])
    }

    @Test func decodesFramesFedByteByByteAndInOddChunks() throws {
        let frames = [
            frame(0, 1, [], "handshake"), frame(1, 7, [], ""), frame(1, 7, .endStream, "last"),
            frame(3, 9, .error, String(repeating: "e", count: 300)), frame(5, 2, .cancel, ""),
        ]
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(bytes(frames), frames), (bytes([frames[0]]), [frames[0]])],
            decoderFactory: { FrameDecoder(maximumPayloadLength: 1024) })
    }

    @Test func aPartialFrameHoldsTheBytesReceivedNotTheLengthItAnnounces() throws {
        var decoder = FrameDecoder(maximumPayloadLength: 8 << 20)
        var buffer = ByteBuffer()
        FrameHeader(payloadLength: 8 << 20, streamID: 3, method: 20).write(to: &buffer)
        buffer.writeRepeatingByte(1, count: 100)
        let capacity = buffer.capacity
        #expect(try decoder.decode(buffer: &buffer) == nil)
        #expect(buffer.readableBytes == FrameHeader.size + 100)
        #expect(buffer.capacity == capacity, "the decoder reserved room for the announced payload")

        // A trickle through ByteToMessageHandler: no frame and no error until the last byte.
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maximumPayloadLength: 8 << 20)))
        var header = ByteBuffer()
        FrameHeader(payloadLength: 8 << 20, streamID: 3, method: 20).write(to: &header)
        try channel.writeInbound(header)
        for _ in 0..<1000 { try channel.writeInbound(ByteBuffer(repeating: 2, count: 16)) }
        #expect(try channel.readInbound(as: Frame.self) == nil)
        try channel.writeInbound(ByteBuffer(repeating: 3, count: (8 << 20) - 16_000))
        let frame = try #require(try channel.readInbound(as: Frame.self))
        #expect(frame.payload.readableBytes == 8 << 20)
        #expect(try channel.finish().isClean)
    }

    @Test func oversizeLengthIsRejectedFromTheHeaderAlone() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maximumPayloadLength: 1024)))
        var header = ByteBuffer()
        FrameHeader(payloadLength: 1025, streamID: 1, method: 1).write(to: &header)
        // Only the 12 header bytes: the decoder must not wait for (or buffer) the payload.
        let error = try #require(throws: FrameError.self) { try channel.writeInbound(header) }
        #expect(error.code == .oversizeFrame)
        #expect(error.message.contains("1025"))
        _ = try? channel.finish()
    }

    @Test(arguments: [UInt8(0x08), 0x10, 0x80])
    func unknownFlagsAreMalformed(flag: UInt8) throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maximumPayloadLength: 1024)))
        var buffer = ByteBuffer()
        buffer.writeMultipleIntegers(UInt32(0), UInt32(1), UInt16(1), flag, UInt8(0))
        let error = try #require(throws: FrameError.self) { try channel.writeInbound(buffer) }
        #expect(error.code == .malformedHeader)
        _ = try? channel.finish()
    }

    @Test func truncatedInputAtEveryCutIsReportedAtEndOfStream() throws {
        let whole = bytes([frame(1, 2, [], "0123456789")])
        for cut in 1..<whole.readableBytes {
            var decoder = FrameDecoder(maximumPayloadLength: 1024)
            var partial = whole.getSlice(at: 0, length: cut)!
            #expect(try decoder.decode(buffer: &partial) == nil)
            let error = try #require(throws: FrameError.self) { _ = try decoder.decodeLast(buffer: &partial, seenEOF: true) }
            #expect(error.code == .truncatedFrame)
        }
    }

    @Test func randomInputNeverCrashesAndNeverBuffersPastTheLimit() throws {
        var generator = SplitMix64(seed: 0xF70D)
        for _ in 0..<500 {
            var decoder = FrameDecoder(maximumPayloadLength: 256)
            var buffer = ByteBuffer()
            for _ in 0..<Int(generator.next() % 300) { buffer.writeInteger(UInt8(truncatingIfNeeded: generator.next())) }
            do {
                while let frame = try decoder.decode(buffer: &buffer) {
                    #expect(frame.payload.readableBytes <= 256)
                    #expect(FrameFlags.known.isSuperset(of: frame.header.flags))
                }
                // Whatever is left is less than one frame: a header announcing at most 256 bytes.
                #expect(buffer.readableBytes < FrameHeader.size + 256)
            } catch let error as FrameError {
                #expect([.oversizeFrame, .malformedHeader].contains(error.code))
            }
        }
    }

    @Test func encoderPutsASmallPayloadBehindTheHeaderAndWritesLargeOnesAsTheyAre() throws {
        let channel = EmbeddedChannel(handlers: [FrameEncoder()])
        // Small: one buffer, header and payload (one TLS record instead of two).
        let small = frame(9, 4, .endStream, "payload bytes")
        try channel.writeOutbound(small)
        var wire = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(wire.readableBytes == FrameHeader.size + small.payload.readableBytes)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        var decoder = FrameDecoder(maximumPayloadLength: 1 << 20)
        #expect(try decoder.decode(buffer: &wire) == small)

        // Large: the payload buffer itself follows the header (same storage: not copied).
        let large = frame(11, 4, [], String(repeating: "x", count: 4096))
        try channel.writeOutbound(large)
        let header = try #require(try channel.readOutbound(as: ByteBuffer.self))
        let payload = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(header.readableBytes == FrameHeader.size)
        #expect(baseAddress(payload) == baseAddress(large.payload))
        wire = header
        wire.writeImmutableBuffer(payload)
        #expect(try decoder.decode(buffer: &wire) == large)
        _ = try channel.finish()
    }

    @Test func aFrameInPartsIsWrittenPartByPartAndDecodesAsOnePayload() throws {
        let channel = EmbeddedChannel(handlers: [FrameEncoder()])
        let parts = ["fields", String(repeating: "b", count: 3000), "", "more fields", String(repeating: "c", count: 700)]
            .map { ByteBuffer(string: $0) }
        let sent = Frame(
            streamID: 5, method: 10, flags: .endStream, payload: parts[0], continuation: parts.dropFirst().map { .buffer($0) })
        #expect(Int(sent.header.payloadLength) == parts.reduce(0) { $0 + $1.readableBytes })
        let written = channel.eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(sent, promise: written)
        var buffers: [ByteBuffer] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { buffers.append(buffer) }
        // The header carries the small first part; every later part goes out as it is.
        #expect(buffers.count == parts.count)
        for (buffer, part) in zip(buffers.dropFirst(), parts.dropFirst()) where part.readableBytes > 0 {
            #expect(baseAddress(buffer) == baseAddress(part))
        }
        try written.futureResult.wait()
        var wire = ByteBuffer()
        for buffer in buffers { wire.writeImmutableBuffer(buffer) }
        var decoder = FrameDecoder(maximumPayloadLength: 1 << 20)
        let received = try #require(try decoder.decode(buffer: &wire))
        #expect(received.header == sent.header)
        #expect(String(buffer: received.payload) == parts.map { String(buffer: $0) }.joined())
        _ = try channel.finish()
    }

    @Test func fileRegionsGoOutAsTheyAreWhereAllowedAndCloseTheChannelElsewhere() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-region-\(UUID().uuidString)").path
        FileManager.default.createFile(atPath: path, contents: Data(repeating: 0x61, count: 4096))
        defer { try? FileManager.default.removeItem(atPath: path) }

        final class Flag: Sendable {
            let raised = Atomic(false)
            var isRaised: Bool { raised.load(ordering: .acquiring) }
        }
        final class Owner: Sendable {
            let handle: NIOFileHandle
            let released: Flag
            init(_ handle: NIOFileHandle, released: Flag) {
                self.handle = handle
                self.released = released
            }
            deinit {
                try? handle.close()
                released.raised.store(true, ordering: .releasing)
            }
        }
        func regionFrame(released: Flag) -> Frame {
            let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: open(path, O_RDONLY))
            let region = FileRegion(fileHandle: handle, readerIndex: 100, endIndex: 1100)
            return Frame(
                streamID: 3, method: 22, payload: ByteBuffer(string: "fields"),
                continuation: [.file(region, keepAlive: Owner(handle, released: released))])
        }

        // Allowed (no TLS): the header and fields, then the region itself; the owner is let go once written.
        let released = Flag()
        let plain = EmbeddedChannel(handlers: [FrameEncoder(allowsFileRegions: true)])
        let written = plain.eventLoop.makePromise(of: Void.self)
        plain.writeAndFlush(regionFrame(released: released), promise: written)
        let header = try #require(try plain.readOutbound(as: IOData.self))
        guard case .byteBuffer(let bytes) = header else { Issue.record("expected bytes first"); return }
        #expect(Int(bytes.getInteger(at: 0, as: UInt32.self)!) == 6 + 1000)
        let region = try #require(try plain.readOutbound(as: IOData.self))
        guard case .fileRegion(let sentRegion) = region else { Issue.record("expected the file region"); return }
        #expect(sentRegion.readerIndex == 100 && sentRegion.endIndex == 1100)
        try written.futureResult.wait()
        #expect(released.isRaised)
        _ = try plain.finish()

        // Not allowed (a TLS channel): the write fails and the channel closes, the handle is closed.
        let releasedOnTLS = Flag()
        let tls = EmbeddedChannel(handlers: [FrameEncoder()])
        let failed = tls.eventLoop.makePromise(of: Void.self)
        tls.writeAndFlush(regionFrame(released: releasedOnTLS), promise: failed)
        #expect(throws: FrameError.self) { try failed.futureResult.wait() }
        #expect(!tls.isActive)
        #expect(releasedOnTLS.isRaised)
    }

    private func baseAddress(_ buffer: ByteBuffer) -> UnsafeRawPointer? {
        buffer.withUnsafeReadableBytes { $0.baseAddress }
    }
}

/// A small deterministic generator for reproducible random input.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
