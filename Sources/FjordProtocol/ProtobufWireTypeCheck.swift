import FjordRecords
import Foundation
public import NIOCore
public import SwiftProtobuf

/// A field the message knows arrived with another wire type than the message declares.
///
/// SwiftProtobuf keeps such a field as an unknown field (as it does for a field number the message
/// does not have); Fjord refuses it, as `ProduceRequestView` does for produce (`MALFORMED_MESSAGE`).
public struct ProtobufWireTypeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The full protobuf name of the message holding the field.
    public var messageName: String
    /// The field's number.
    public var fieldNumber: UInt64
    /// The wire type it arrived with.
    public var wireType: UInt8
    /// What is wrong; `nil`: the wire type is not the field's declared one.
    public var reason: String?

    /// The error, for people.
    public var description: String {
        if let reason { return "\(messageName) has \(reason) (at field \(fieldNumber), wire type \(wireType))" }
        return "field \(fieldNumber) of \(messageName) arrived with wire type \(wireType), which is not its declared type"
    }
}

extension SwiftProtobuf.Message {
    /// Decodes the message from the readable bytes of `buffer`, like ``init(buffer:)``, and also
    /// refuses a known field (at any depth) that arrived with the wrong wire type. Field numbers
    /// the message does not know are still skipped, for forward compatibility.
    ///
    /// ```swift
    /// let request = try Fjord_V1_CreateTopicRequest(checkingWireTypes: frame.payload)
    /// ```
    ///
    /// - Throws: SwiftProtobuf's decoding errors, or ``ProtobufWireTypeError``.
    public init(checkingWireTypes buffer: ByteBuffer) throws {
        try self.init(buffer: buffer)
        try ProtobufWireTypeCheck.check(self)
    }
}

/// Finds known fields kept as unknown because of their wire type: for each unknown field of a
/// message, it decodes a probe holding just that field number with each other wire type; if the
/// message takes one, the number is known and the original wire type was wrong. Only messages
/// that have unknown fields pay for probes.
enum ProtobufWireTypeCheck {
    static func check<M: SwiftProtobuf.Message>(_ message: M) throws {
        try checkUnknownFields(of: message)
        var visitor = NestedMessages()
        try message.traverse(visitor: &visitor)
    }

    private static func checkUnknownFields<M: SwiftProtobuf.Message>(of message: M) throws {
        let data = message.unknownFields.data
        guard !data.isEmpty else { return }
        let fields: [(UInt64, UInt8)] = data.withUnsafeBytes { bytes in
            var reader = ProtobufWireReader(bytes)
            var fields: [(UInt64, UInt8)] = []
            // SwiftProtobuf validated these bytes; stop at anything the reader does not handle (groups).
            while !reader.isAtEnd, let field = reader.readField() { fields.append((field.number, field.wireType)) }
            return fields
        }
        // Each distinct (number, wire type) is probed once, and a message may carry at most
        // `maximumDistinctUnknownFields` of them: a request of millions of tiny unknown fields
        // costs one pass over its bytes, never millions of probes on an event loop.
        var probed = Set<UInt64>()
        for (number, wireType) in fields {
            guard probed.insert(number << 3 | UInt64(wireType)).inserted else { continue }
            guard probed.count <= maximumDistinctUnknownFields else {
                throw ProtobufWireTypeError(
                    messageName: M.protoMessageName, fieldNumber: number, wireType: wireType,
                    reason: "more than \(maximumDistinctUnknownFields) distinct unknown fields")
            }
            for probe: UInt8 in [0, 1, 2, 5] where probe != wireType && takes(M.self, field: number, wireType: probe) {
                throw ProtobufWireTypeError(messageName: M.protoMessageName, fieldNumber: number, wireType: wireType)
            }
        }
    }

    /// Distinct unknown (field number, wire type) pairs one message may carry; more is refused.
    static let maximumDistinctUnknownFields = 64

    /// Whether `M` decodes field `number` with `wireType` as a known field.
    private static func takes<M: SwiftProtobuf.Message>(_: M.Type, field number: UInt64, wireType: UInt8) -> Bool {
        var probe = ByteBuffer()
        probe.writeProtobufKey(field: Int(number), wireType: wireType)
        switch wireType {
        case 0: probe.writeProtobufVarint(0)
        case 1: probe.writeInteger(UInt64(0))
        case 5: probe.writeInteger(UInt32(0))
        default: probe.writeProtobufVarint(0)  // an empty length-delimited payload
        }
        guard let decoded = try? M(buffer: probe) else { return false }
        return decoded.unknownFields.data.isEmpty
    }

    /// Visits every nested message (singular, repeated, map values) and checks its unknown fields.
    private struct NestedMessages: SwiftProtobuf.Visitor {
        mutating func visitSingularMessageField<M: SwiftProtobuf.Message>(value: M, fieldNumber: Int) throws {
            try ProtobufWireTypeCheck.check(value)
        }
        mutating func visitMapField<KeyType, ValueType>(
            fieldType: _ProtobufMessageMap<KeyType, ValueType>.Type,
            value: _ProtobufMessageMap<KeyType, ValueType>.BaseType,
            fieldNumber: Int
        ) throws {
            for message in value.values { try ProtobufWireTypeCheck.check(message) }
        }
        mutating func visitMapField<KeyType, ValueType: MapValueType>(
            fieldType: _ProtobufMap<KeyType, ValueType>.Type,
            value: _ProtobufMap<KeyType, ValueType>.BaseType,
            fieldNumber: Int
        ) throws {}
        mutating func visitMapField<KeyType, ValueType>(
            fieldType: _ProtobufEnumMap<KeyType, ValueType>.Type,
            value: _ProtobufEnumMap<KeyType, ValueType>.BaseType,
            fieldNumber: Int
        ) throws where ValueType.RawValue == Int {}
        mutating func visitSingularDoubleField(value: Double, fieldNumber: Int) throws {}
        mutating func visitSingularInt64Field(value: Int64, fieldNumber: Int) throws {}
        mutating func visitSingularUInt64Field(value: UInt64, fieldNumber: Int) throws {}
        mutating func visitSingularBoolField(value: Bool, fieldNumber: Int) throws {}
        mutating func visitSingularStringField(value: String, fieldNumber: Int) throws {}
        mutating func visitSingularBytesField(value: Data, fieldNumber: Int) throws {}
        mutating func visitSingularEnumField<E: SwiftProtobuf.Enum>(value: E, fieldNumber: Int) throws {}
        mutating func visitUnknown(bytes: Data) throws {}
    }
}
