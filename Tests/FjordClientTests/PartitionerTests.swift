import FjordClient
import Testing

@Suite("Kafka-compatible partitioner")
struct PartitionerTests {
    /// Kafka's own vectors for `Utils.murmur2` (UtilsTest.testMurmur2).
    @Test(arguments: [
        ("21", Int32(-973_932_308)),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
        ("abc", 479_470_107),
    ])
    func murmur2MatchesKafka(key: String, expected: Int32) {
        #expect(Partitioner.murmur2(Array(key.utf8)) == expected)
    }

    @Test func partitionIsThePositiveHashModuloTheCount() {
        // (-973932308 & 0x7fffffff) % 7 computed independently: 1173551340 % 7 = 5
        #expect(Partitioner.partition(forKey: Array("21".utf8), partitionCount: 7) == 1_173_551_340 % 7)
        #expect(Partitioner.partition(forKey: [], partitionCount: 3) == Int(UInt32(bitPattern: Partitioner.murmur2([])) & 0x7fff_ffff) % 3)
    }

    @Test func brokerAddressesParse() {
        #expect(BrokerAddress("localhost:7420") == BrokerAddress(host: "localhost", port: 7420))
        #expect(BrokerAddress("broker") == BrokerAddress(host: "broker", port: 7420))
        #expect(BrokerAddress("[::1]:9000") == BrokerAddress(host: "::1", port: 9000))
        #expect(BrokerAddress("host:0") == nil)
        #expect(BrokerAddress(":7420") == nil)
        #expect(BrokerAddress("host:x") == nil)
    }
}
