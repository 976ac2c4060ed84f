public import NIOCore

/// Hand-written protobuf encoding for the few messages on the hot path, so record batches are
/// placed in a message without an intermediate copy. The output is ordinary protobuf: generated
/// code in any language decodes it.
extension ByteBuffer {
    /// Appends `value` as a base-128 varint.
    @inlinable
    public mutating func writeProtobufVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            writeInteger(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        writeInteger(UInt8(value))
    }

    /// Appends a field key.
    @inlinable
    public mutating func writeProtobufKey(field: Int, wireType: UInt8) {
        writeProtobufVarint(UInt64(field) << 3 | UInt64(wireType))
    }

    /// Appends a varint field (int32, int64, uint32, uint64, enum), omitted when zero like proto3.
    @inlinable
    public mutating func writeProtobufVarintField(_ field: Int, _ value: UInt64) {
        guard value != 0 else { return }
        writeProtobufKey(field: field, wireType: 0)
        writeProtobufVarint(value)
    }

    /// Appends an `int64` field (negative values take ten bytes, as protobuf specifies).
    @inlinable
    public mutating func writeProtobufInt64Field(_ field: Int, _ value: Int64) {
        writeProtobufVarintField(field, UInt64(bitPattern: value))
    }

    /// Appends an `int32` field (sign-extended to 64 bits, as protobuf specifies).
    @inlinable
    public mutating func writeProtobufInt32Field(_ field: Int, _ value: Int32) {
        writeProtobufVarintField(field, UInt64(bitPattern: Int64(value)))
    }

    /// Appends a length-delimited field's key and length; the caller writes the `length` bytes.
    @inlinable
    public mutating func writeProtobufLengthPrefix(_ field: Int, length: Int) {
        writeProtobufKey(field: field, wireType: 2)
        writeProtobufVarint(UInt64(length))
    }

    /// Appends a string field, omitted when empty.
    @inlinable
    public mutating func writeProtobufStringField(_ field: Int, _ value: String) {
        guard !value.isEmpty else { return }
        writeProtobufLengthPrefix(field, length: value.utf8.count)
        writeString(value)
    }
}

/// Sizes of encoded protobuf pieces, to write a length before the bytes it covers.
public enum ProtobufSize {
    /// Bytes `value` takes as a varint.
    @inlinable
    public static func varint(_ value: UInt64) -> Int {
        var value = value
        var size = 1
        while value >= 0x80 {
            value >>= 7
            size += 1
        }
        return size
    }

    /// Bytes of a varint field (0 when the value is zero and so omitted).
    @inlinable
    public static func varintField(_ field: Int, _ value: UInt64) -> Int {
        value == 0 ? 0 : varint(UInt64(field) << 3) + varint(value)
    }

    /// Bytes of a length-delimited field holding `length` bytes.
    @inlinable
    public static func lengthDelimitedField(_ field: Int, length: Int) -> Int {
        varint(UInt64(field) << 3 | 2) + varint(UInt64(length)) + length
    }

    /// Bytes of a string field (0 when empty).
    @inlinable
    public static func stringField(_ field: Int, _ value: String) -> Int {
        value.isEmpty ? 0 : lengthDelimitedField(field, length: value.utf8.count)
    }
}
