/// Chooses a partition for a keyed record exactly as Kafka's default partitioner does, so the
/// same key lands on the same partition number in Fjord and in Kafka (and in Fjord's Python and C
/// clients): `(murmur2(key) & 0x7fffffff) % partitionCount`.
///
/// ```swift
/// let partition = Partitioner.partition(forKey: Array("user-42".utf8), partitionCount: 12)
/// ```
public enum Partitioner {
    /// The partition for `key` among `partitionCount` partitions.
    public static func partition(forKey key: [UInt8], partitionCount: Int) -> Int {
        precondition(partitionCount > 0, "a topic has at least one partition")
        return Int(UInt32(bitPattern: murmur2(key)) & 0x7fff_ffff) % partitionCount
    }

    /// Kafka's 32-bit MurmurHash2 (seed `0x9747b28c`), as `org.apache.kafka.common.utils.Utils.murmur2`.
    public static func murmur2(_ data: [UInt8]) -> Int32 {
        let m: UInt32 = 0x5bd1_e995
        let r: UInt32 = 24
        let length = data.count
        var h: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: length)
        data.withUnsafeBufferPointer { bytes in
            var i = 0
            while i + 4 <= length {
                var k = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
                k &*= m
                k ^= k >> r
                k &*= m
                h &*= m
                h ^= k
                i += 4
            }
            let tail = length & ~3
            switch length % 4 {
            case 3:
                h ^= UInt32(bytes[tail + 2]) << 16
                h ^= UInt32(bytes[tail + 1]) << 8
                h ^= UInt32(bytes[tail])
                h &*= m
            case 2:
                h ^= UInt32(bytes[tail + 1]) << 8
                h ^= UInt32(bytes[tail])
                h &*= m
            case 1:
                h ^= UInt32(bytes[tail])
                h &*= m
            default:
                break
            }
        }
        h ^= h >> 13
        h &*= m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }
}
