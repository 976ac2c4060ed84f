import FjordProto
/// Topic name rules, Kafka's: 1 to 249 characters from `[a-zA-Z0-9._-]`, not `.` or `..`.
enum TopicName {
    static let maximumLength = 249

    /// Throws ``BrokerError`` with `INVALID_TOPIC` when `name` breaks a rule.
    static func validate(_ name: String) throws(BrokerError) {
        guard !name.isEmpty else { throw BrokerError(.invalidTopic, "the topic name is empty") }
        guard name != ".", name != ".." else { throw BrokerError(.invalidTopic, "a topic cannot be named \"\(name)\"") }
        guard name.utf8.count <= maximumLength else {
            throw BrokerError(.invalidTopic, "the topic name is \(name.utf8.count) characters long; the limit is \(maximumLength)")
        }
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                continue
            default:
                throw BrokerError(
                    .invalidTopic, "the topic name \"\(name)\" has a character outside [a-zA-Z0-9._-]")
            }
        }
    }
}
