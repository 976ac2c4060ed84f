import FjordProto
import SwiftProtobuf

/// Decodes a stored batch with the generated code, as a client in any language would.
enum FjordProtoDecoding {
    static func decode(_ bytes: [UInt8]) throws -> [String] {
        let batch = try Fjord_V1_RecordBatch(serializedBytes: bytes)
        return batch.records.map { String(decoding: $0.value, as: UTF8.self) }
    }
}
