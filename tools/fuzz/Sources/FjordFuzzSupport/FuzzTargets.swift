import FjordProto
import FjordProtocol
import FjordRecords
import FjordWire
import Foundation
import NIOCore
import SwiftProtobuf

/// The checks each fuzz target runs on one input. An input may be rejected (that is the point);
/// a crash, a sanitizer report or a violated invariant (`fuzzInvariant`) is a finding.
public enum FuzzTargets {
    /// Largest payload the frame target accepts, as a broker with a small `max.frame.bytes` would.
    static let maximumPayloadLength = 64 * 1024

    /// Feeds `bytes` to a ``FrameDecoder`` in chunks whose sizes come from the input itself, as a
    /// socket would deliver them, and checks every decoded frame against the bytes it came from.
    public static func frames(_ bytes: UnsafeRawBufferPointer) {
        guard let chunkSeed = bytes.first else { return }
        let input = UnsafeRawBufferPointer(rebasing: bytes.dropFirst())
        var decoder = FrameDecoder(maximumPayloadLength: maximumPayloadLength)
        var buffer = ByteBuffer()
        var consumed = 0
        var offset = 0
        // One input in sixteen arrives in tiny pieces (partial headers), the rest as a socket
        // usually delivers them (tiny pieces of a 16 KiB input cost thousands of decode calls).
        let chunk = chunkSeed < 16 ? Int(chunkSeed) + 1 : Int(chunkSeed) * 64
        while offset < input.count {
            let end = min(input.count, offset + chunk)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: input[offset..<end]))
            offset = end
            do {
                while let frame = try decoder.decode(buffer: &buffer) {
                    let length = Int(frame.header.payloadLength)
                    fuzzInvariant(length <= maximumPayloadLength, "a frame over the limit was decoded")
                    fuzzInvariant(frame.payload.readableBytes == length, "payload length differs from the header")
                    fuzzInvariant(frame.payloadContinuation.isEmpty, "a decoded frame has continuation parts")
                    // The payload is exactly the input bytes after this frame's header.
                    let start = consumed + FrameHeader.size
                    let expected = UnsafeRawBufferPointer(rebasing: input[start..<start + length])
                    frame.payload.withUnsafeReadableBytes { payload in
                        fuzzInvariant(payload.elementsEqual(expected), "payload bytes differ from the input")
                    }
                    consumed = start + length
                }
            } catch {
                return  // a malformed or oversize header: the broker closes the connection
            }
        }
        _ = try? decoder.decodeLast(buffer: &buffer, seenEOF: true)
    }

    /// The request messages a client may send, in the order the first input byte selects them.
    static let requestTypes: [any SwiftProtobuf.Message.Type] = [
        Fjord_V1_HandshakeRequest.self, Fjord_V1_FetchRequest.self, Fjord_V1_SubscribeRequest.self,
        Fjord_V1_SubscribeCredit.self, Fjord_V1_ListOffsetsRequest.self, Fjord_V1_InitProducerIdRequest.self,
        Fjord_V1_CreateTopicRequest.self, Fjord_V1_DeleteTopicRequest.self, Fjord_V1_ListTopicsRequest.self,
        Fjord_V1_DescribeTopicRequest.self, Fjord_V1_CreatePartitionsRequest.self,
        Fjord_V1_AlterTopicConfigRequest.self, Fjord_V1_GetMetadataRequest.self, Fjord_V1_ProduceRequest.self,
    ]

    /// Decodes the input as the request type its first byte selects, straight from a `ByteBuffer`
    /// as the broker does; whatever decodes must re-encode and decode to an equal message.
    public static func requests(_ bytes: UnsafeRawBufferPointer) {
        guard let selector = bytes.first else { return }
        let type = requestTypes[Int(selector) % requestTypes.count]
        let payload = ByteBuffer(bytes: bytes.dropFirst())
        guard let message = try? type.init(checkingWireTypes: payload) else { return }
        let encoded: ByteBuffer
        do { encoded = try message.serializedBuffer() } catch {
            fuzzInvariant(false, "a decoded \(type.protoMessageName) does not encode: \(error)")
            return
        }
        do {
            let again = try type.init(checkingWireTypes: encoded)
            fuzzInvariant(again.isEqualTo(message: message), "\(type.protoMessageName) changed in a round trip")
        } catch {
            fuzzInvariant(false, "a re-encoded \(type.protoMessageName) does not decode: \(error)")
        }
    }

    /// Parses a produce request as the broker's produce path does, validates its batch as the log
    /// does before appending, and walks every record of a batch the validator accepted: a batch
    /// that passes validation must be fully readable by consumers.
    public static func produce(_ bytes: UnsafeRawBufferPointer) {
        let payload = ByteBuffer(bytes: bytes)
        guard let request = ProduceRequestView(parsing: payload) else { return }
        let validator = RecordBatchValidator(maxBatchBytes: 1 << 20)
        request.batch.withUnsafeReadableBytes { batch in
            guard let header = try? validator.validate(batch) else { return }
            let view = RecordBatchView(batch)
            fuzzInvariant(view.isCRCValid, "the validator accepted a batch whose CRC fails")
            var records = 0
            do {
                try view.forEachRecord { record in
                    fuzzInvariant(record.index == records, "record indexes are not consecutive")
                    for range in [record.key, record.value].compactMap({ $0 }) {
                        fuzzInvariant(range.lowerBound >= 0 && range.upperBound <= batch.count, "a record field lies outside its batch")
                    }
                    records += 1
                }
            } catch {
                fuzzInvariant(false, "the validator accepted a batch whose records do not decode: \(error)")
            }
            fuzzInvariant(records == Int(header.recordCount), "record count \(records) differs from the header's \(header.recordCount)")
        }
    }

    /// Valid inputs for each target, built with the project's own encoders.
    public static func seeds(for target: String) -> [[UInt8]] {
        switch target {
        case "fuzz-frames": return FuzzSeeds.frames()
        case "fuzz-requests": return FuzzSeeds.requests()
        case "fuzz-produce": return FuzzSeeds.produce()
        default: return []
        }
    }
}

/// Stops the process with a message when a fuzzing invariant does not hold (libFuzzer saves the input).
@inline(__always)
func fuzzInvariant(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("fuzz invariant violated: \(message())") }
}
