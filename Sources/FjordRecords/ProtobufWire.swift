/// A forward-only reader of protobuf wire format over raw memory, for scanning without decoding.
package struct ProtobufWireReader {
    let base: UnsafeRawPointer
    package private(set) var position: Int
    let end: Int

    package init(_ bytes: UnsafeRawBufferPointer, from start: Int = 0) {
        self.base = bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
        self.position = start
        self.end = bytes.count
    }

    package var isAtEnd: Bool { position >= end }

    /// Reads a varint of at most 10 bytes; `nil` when malformed or past the end.
    package mutating func readVarint() -> UInt64? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while position < end {
            let byte = base.load(fromByteOffset: position, as: UInt8.self)
            position += 1
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift >= 70 { return nil }
        }
        return nil
    }

    /// A field: its number, wire type, and for length-delimited fields the payload range.
    package struct Field {
        package var number: UInt64
        package var wireType: UInt8
        package var payload: Range<Int>
        package var varint: UInt64
    }

    /// Reads the next field and skips its payload; `nil` when malformed.
    package mutating func readField() -> Field? {
        guard let key = readVarint() else { return nil }
        let number = key >> 3
        let wireType = UInt8(key & 7)
        // Field numbers run from 1 to 2^29 - 1; protobuf decoders reject anything else.
        guard number > 0, number <= 0x1FFF_FFFF else { return nil }
        let start = position
        switch wireType {
        case 0:
            guard let v = readVarint() else { return nil }
            return Field(number: number, wireType: 0, payload: start..<position, varint: v)
        case 1:
            guard end - position >= 8 else { return nil }
            position += 8
        case 5:
            guard end - position >= 4 else { return nil }
            position += 4
        case 2:
            guard let length = readVarint(), length <= UInt64(end - position) else { return nil }
            let payloadStart = position
            position += Int(length)
            return Field(number: number, wireType: 2, payload: payloadStart..<position, varint: length)
        default:
            return nil
        }
        return Field(number: number, wireType: wireType, payload: start..<position, varint: 0)
    }
}
