import FjordClient
import FjordRecords
import Foundation

/// The JSON-lines record format shared by the Swift, Python and C tools (tools/clients/README.md):
/// keys, values and header values in base64, timestamps in ms.
enum JSONRecordLine {
    struct InputError: Error, CustomStringConvertible {
        var line: Int
        var message: String
        var description: String { "line \(line): \(message)" }
    }

    /// Parses one producer input line.
    static func parse(_ text: String, line: Int, topic: String) throws -> ProducerRecord {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw InputError(line: line, message: "not a JSON object")
        }
        func bytes(_ value: Any?, _ name: String) throws -> [UInt8]? {
            guard let value, !(value is NSNull) else { return nil }
            guard let string = value as? String, let data = Data(base64Encoded: string) else {
                throw InputError(line: line, message: "\(name) must be base64 text or null")
            }
            return Array(data)
        }
        guard object["value"] != nil else { throw InputError(line: line, message: "value is required") }
        var record = ProducerRecord(topic: topic, key: try bytes(object["key"], "key"), value: try bytes(object["value"], "value"))
        if let timestamp = object["timestamp"], !(timestamp is NSNull) {
            guard let number = timestamp as? NSNumber else { throw InputError(line: line, message: "timestamp must be a number") }
            record.timestamp = number.int64Value
        }
        if let partition = object["partition"], !(partition is NSNull) {
            guard let number = partition as? NSNumber else { throw InputError(line: line, message: "partition must be a number") }
            record.partition = number.intValue
        }
        if let headers = object["headers"], !(headers is NSNull) {
            guard let list = headers as? [[String: Any]] else {
                throw InputError(line: line, message: "headers must be a list of {\"key\", \"value\"} objects")
            }
            record.headers = try list.map { header in
                guard let key = header["key"] as? String else { throw InputError(line: line, message: "a header needs a string key") }
                return RecordHeader(key: key, value: try bytes(header["value"], "header value"))
            }
        }
        return record
    }

    /// Formats one consumed record.
    static func format(_ record: ConsumerRecord) -> String {
        var object: [String: Any] = [
            "topic": record.topic, "partition": record.partition, "offset": record.offset, "timestamp": record.timestamp,
            "key": record.key.map { Data($0).base64EncodedString() } ?? NSNull(),
            "value": record.value.map { Data($0).base64EncodedString() } ?? NSNull(),
        ]
        object["headers"] = record.headers.map { header -> [String: Any] in
            ["key": header.key, "value": header.value.map { Data($0).base64EncodedString() } ?? NSNull()]
        }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
