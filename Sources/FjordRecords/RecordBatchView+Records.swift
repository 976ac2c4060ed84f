/// One record of a batch as its byte ranges within the batch: decoding finds the fields without
/// copying them.
public struct RecordFields: Sendable, Hashable {
    /// Index of the record within its batch (its offset is the batch's base offset plus this).
    public var index: Int
    /// The record's timestamp in ms (the batch's first timestamp plus the record's delta).
    public var timestamp: Int64
    /// Byte range of the key within the batch; `nil` for a null key.
    public var key: Range<Int>?
    /// Byte range of the value within the batch; `nil` for a null value.
    public var value: Range<Int>?
    /// The headers' byte ranges, in order.
    public var headers: [Header] = []

    /// One header's name range and value range (`nil` value: a null header value).
    public struct Header: Sendable, Hashable {
        /// Range of the UTF-8 name.
        public var key: Range<Int>
        /// Range of the value; `nil` for a null value.
        public var value: Range<Int>?
    }

    /// Creates fields.
    public init(index: Int, timestamp: Int64, key: Range<Int>?, value: Range<Int>?) {
        self.index = index
        self.timestamp = timestamp
        self.key = key
        self.value = value
    }
}

extension RecordBatchView {
    /// Calls `body` for each record in order, with the byte ranges of its fields within ``bytes``.
    ///
    /// ```swift
    /// try batch.forEachRecord { fields in
    ///     let value = fields.value.map { Array(batch.bytes[$0]) }
    /// }
    /// ```
    ///
    /// - Throws: ``RecordBatchError`` with `malformedRecords` when the records are not valid
    ///   protobuf or their count differs from the header's.
    public func forEachRecord(_ body: (RecordFields) throws -> Void) throws {
        let first = header.firstTimestamp
        var reader = ProtobufWireReader(bytes, from: RecordBatchLayout.headerSize)
        var index = 0
        while !reader.isAtEnd {
            guard let field = reader.readField() else {
                throw RecordBatchError(code: .malformedRecords, message: "record \(index) is not valid protobuf")
            }
            guard field.number == 15, field.wireType == 2 else { continue }
            var fields = RecordFields(index: index, timestamp: first, key: nil, value: nil)
            var record = ProtobufWireReader(
                UnsafeRawBufferPointer(rebasing: bytes[..<field.payload.upperBound]), from: field.payload.lowerBound)
            while !record.isAtEnd {
                guard let inner = record.readField() else {
                    throw RecordBatchError(code: .malformedRecords, message: "record \(index) has a malformed field")
                }
                switch (inner.number, inner.wireType) {
                case (1, 0):
                    fields.timestamp = first &+ (Int64(bitPattern: inner.varint >> 1) ^ -Int64(bitPattern: inner.varint & 1))
                case (2, 2): fields.key = inner.payload
                case (3, 2): fields.value = inner.payload
                case (4, 2):
                    var header = ProtobufWireReader(
                        UnsafeRawBufferPointer(rebasing: bytes[..<inner.payload.upperBound]), from: inner.payload.lowerBound)
                    var name = inner.payload.lowerBound..<inner.payload.lowerBound
                    var value: Range<Int>?
                    while !header.isAtEnd {
                        guard let part = header.readField() else {
                            throw RecordBatchError(code: .malformedRecords, message: "record \(index) has a malformed header")
                        }
                        if part.number == 1, part.wireType == 2 { name = part.payload }
                        if part.number == 2, part.wireType == 2 { value = part.payload }
                    }
                    fields.headers.append(.init(key: name, value: value))
                default:
                    break
                }
            }
            try body(fields)
            index += 1
        }
        guard index == Int(recordCount) else {
            throw RecordBatchError(code: .malformedRecords, message: "the header counts \(recordCount) records but the batch holds \(index)")
        }
    }

    /// Decodes every record, copying keys, values and headers.
    public func decodeRecords() throws -> [Record] {
        var records: [Record] = []
        records.reserveCapacity(Int(recordCount))
        try forEachRecord { fields in
            records.append(
                Record(
                    key: fields.key.map { Array(bytes[$0]) }, value: fields.value.map { Array(bytes[$0]) },
                    headers: fields.headers.map {
                        RecordHeader(key: String(decoding: bytes[$0.key], as: UTF8.self), value: $0.value.map { Array(bytes[$0]) })
                    }, timestamp: fields.timestamp))
        }
        return records
    }
}
