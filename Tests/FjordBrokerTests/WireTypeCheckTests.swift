import FjordProto
import FjordProtocol
import NIOCore
import Testing

/// `Message(checkingWireTypes:)`, which every request decode goes through: known fields with the
/// wrong wire type are refused, unknown ones skipped, at a cost bounded by the payload's size.
@Suite struct WireTypeCheckTests {
    /// `CreateTopicRequest` with `name` (field 1, a string) and the given extra fields.
    func payload(_ extra: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeProtobufStringField(1, "orders")
        extra(&buffer)
        return buffer
    }

    @Test func aKnownFieldWithTheWrongWireTypeIsRefused() throws {
        // Field 2 (`partitions`, uint32) sent length-delimited.
        let wrong = payload { $0.writeProtobufLengthPrefix(2, length: 1); $0.writeInteger(UInt8(7)) }
        let error = try #require(throws: ProtobufWireTypeError.self) { try Fjord_V1_CreateTopicRequest(checkingWireTypes: wrong) }
        #expect(error.fieldNumber == 2 && error.wireType == 2)
        // The same number as a varint is the field itself.
        let right = payload { $0.writeProtobufVarintField(2, 3) }
        #expect(try Fjord_V1_CreateTopicRequest(checkingWireTypes: right).partitions == 3)
    }

    @Test func unknownFieldsAreSkippedUpToTheDistinctLimit() throws {
        let limit = 64
        let atLimit = payload { buffer in for number in 0..<limit { buffer.writeProtobufVarintField(1000 + number, 1) } }
        #expect(try Fjord_V1_CreateTopicRequest(checkingWireTypes: atLimit).name == "orders")
        let overLimit = payload { buffer in for number in 0...limit { buffer.writeProtobufVarintField(1000 + number, 1) } }
        let error = try #require(throws: ProtobufWireTypeError.self) { try Fjord_V1_CreateTopicRequest(checkingWireTypes: overLimit) }
        #expect(error.description.contains("more than 64 distinct unknown fields"))
    }

    @Test func manyRepeatsOfOneUnknownFieldAreProbedOnce() throws {
        // 200,000 copies of one unknown field: accepted, and probed once rather than 200,000 times.
        let repeated = payload { buffer in for _ in 0..<200_000 { buffer.writeProtobufVarintField(999, 1) } }
        let started = ContinuousClock.now
        #expect(try Fjord_V1_CreateTopicRequest(checkingWireTypes: repeated).name == "orders")
        #expect(ContinuousClock.now - started < .seconds(5))
    }
}
