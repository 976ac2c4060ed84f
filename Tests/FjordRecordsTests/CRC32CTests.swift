import FjordRecords
import Foundation
import Testing

/// Bitwise CRC32C (Castagnoli): reflected polynomial 0x82F63B78, register initialised to ~0 and
/// inverted at the end. `initial` continues an earlier checksum, like `CRC32C.update`.
func referenceCRC32C<S: Sequence<UInt8>>(_ bytes: S, initial: UInt32 = 0) -> UInt32 {
    var register = ~initial
    for byte in bytes {
        register = referenceStep(register, byte)
    }
    return ~register
}

/// Advances a raw (not inverted) CRC32C register over one byte, bit by bit.
func referenceStep(_ register: UInt32, _ byte: UInt8) -> UInt32 {
    var crc = register ^ UInt32(byte)
    for _ in 0..<8 {
        crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1
    }
    return crc
}

/// A small deterministic generator (SplitMix64) so failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
}

/// `CRC32C.update` over `bytes[range]`, through a pointer whose alignment follows `range.lowerBound`.
func crcOfSlice(_ bytes: [UInt8], _ range: Range<Int>, initial: UInt32 = 0) -> UInt32 {
    bytes.withUnsafeBytes { CRC32C.update(initial, UnsafeRawBufferPointer(rebasing: $0[range])) }
}

@Suite("CRC32C")
struct CRC32CTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var crc: UInt32
        var testDescription: String { name }
    }

    static let vectors: [Vector] = [
        Vector(name: "empty", bytes: [], crc: 0),
        Vector(name: "\"123456789\"", bytes: Array("123456789".utf8), crc: 0xE306_9283),
        Vector(name: "32 zero bytes", bytes: [UInt8](repeating: 0, count: 32), crc: 0x8A91_36AA),
        Vector(name: "32 0xFF bytes", bytes: [UInt8](repeating: 0xFF, count: 32), crc: 0x62A8_AB43),
        Vector(name: "32 incrementing bytes", bytes: (0..<32).map { UInt8($0) }, crc: 0x46DD_794E),
        Vector(name: "32 decrementing bytes", bytes: (0..<32).reversed().map { UInt8($0) }, crc: 0x113F_DB5C),
        Vector(name: "\"a\"", bytes: Array("a".utf8), crc: 0xC1D0_4330),
        Vector(
            name: "quick brown fox", bytes: Array("The quick brown fox jumps over the lazy dog".utf8),
            crc: 0x2262_0404),
    ]

    @Test("known vectors", arguments: vectors)
    func knownVector(_ vector: Vector) {
        #expect(CRC32C.checksum(vector.bytes) == vector.crc)
        #expect(vector.bytes.withUnsafeBytes { CRC32C.checksum($0) } == vector.crc)
        #expect(vector.bytes.withUnsafeBytes { CRC32C.update(0, $0) } == vector.crc)
        // The reference implementation agrees, so it can be trusted for the random tests below.
        #expect(referenceCRC32C(vector.bytes) == vector.crc)
    }

    @Test("updating over no bytes returns the running value unchanged")
    func emptyUpdate() {
        for crc: UInt32 in [0, 1, 0xE306_9283, .max] {
            #expect(CRC32C.update(crc, UnsafeRawBufferPointer(start: nil, count: 0)) == crc)
            let empty: [UInt8] = []
            #expect(empty.withUnsafeBytes { CRC32C.update(crc, $0) } == crc)
            let some: [UInt8] = [1, 2, 3]
            #expect(some.withUnsafeBytes { CRC32C.update(crc, UnsafeRawBufferPointer(rebasing: $0[1..<1])) } == crc)
        }
    }

    @Test("incremental updates equal the one-shot checksum at every split point")
    func incrementalEveryTwoWaySplit() {
        let data = randomBytes(4000, seed: 1)
        let whole = CRC32C.checksum(data)
        #expect(whole == referenceCRC32C(data))
        for split in 0...data.count {
            let first = crcOfSlice(data, 0..<split)
            let joined = crcOfSlice(data, split..<data.count, initial: first)
            #expect(joined == whole, "split at \(split)")
        }
    }

    @Test("incremental updates over three pieces straddling the 768-byte blocks")
    func incrementalThreeWaySplits() {
        let data = randomBytes(5000, seed: 2)
        let whole = CRC32C.checksum(data)
        let interesting = [0, 1, 7, 8, 9, 255, 256, 257, 511, 512, 513, 767, 768, 769, 1535, 1536, 1537, 2304, 2400]
        for a in interesting {
            for b in interesting.map({ $0 + a }) where b <= data.count {
                var crc = crcOfSlice(data, 0..<a)
                crc = crcOfSlice(data, a..<b, initial: crc)
                crc = crcOfSlice(data, b..<data.count, initial: crc)
                #expect(crc == whole, "splits at \(a) and \(b)")
            }
        }
    }

    @Test("many small chunks of varying size equal the one-shot checksum")
    func incrementalRandomChunks() {
        let data = randomBytes(20_000, seed: 3)
        let whole = CRC32C.checksum(data)
        var rng = SplitMix64(seed: 4)
        for _ in 0..<20 {
            var position = 0
            var crc: UInt32 = 0
            while position < data.count {
                let length = Swift.min(data.count - position, Int.random(in: 0...2000, using: &rng))
                crc = crcOfSlice(data, position..<position + length, initial: crc)
                position += length
            }
            #expect(crc == whole)
        }
    }

    /// Every length from 0 to 3000 at every alignment 0...7 (covering the byte, 8-byte and
    /// 3 x 256-byte paths and their combinations) against the bitwise reference.
    @Test("lengths 0...3000 at alignments 0...7 match the bitwise reference", arguments: 0..<8)
    func lengthsAndAlignments(offset: Int) {
        let maxLength = 3000
        let data = randomBytes(maxLength + 8, seed: 100 + UInt64(offset))
        // Reference checksums of every prefix of data[offset...], in one pass.
        var expected = [UInt32](repeating: 0, count: maxLength + 1)
        var register: UInt32 = ~0
        expected[0] = ~register
        for length in 1...maxLength {
            register = referenceStep(register, data[offset + length - 1])
            expected[length] = ~register
        }
        var mismatches: [Int] = []
        for length in 0...maxLength where crcOfSlice(data, offset..<offset + length) != expected[length] {
            mismatches.append(length)
        }
        #expect(mismatches.isEmpty, "alignment \(offset): wrong CRC for lengths \(mismatches.prefix(20))")
    }

    @Test("continuing from a non-zero CRC matches the reference around block boundaries")
    func nonZeroInitialValue() {
        let data = randomBytes(3 * 768 + 72, seed: 5)
        let seeds: [UInt32] = [1, 0xFFFF_FFFF, 0xE306_9283, 0x8000_0000]
        for seed in seeds {
            for length in [1, 8, 767, 768, 769, 775, 776, 1536, 1537, 2304, 2311, 2368] {
                for offset in [0, 3] {
                    let got = crcOfSlice(data, offset..<offset + length, initial: seed)
                    let want = referenceCRC32C(data[offset..<offset + length], initial: seed)
                    #expect(got == want, "seed \(seed), length \(length), offset \(offset)")
                }
            }
        }
    }

    @Test("a large buffer matches the bitwise reference")
    func largeBuffer() {
        let data = randomBytes(100_003, seed: 6)
        #expect(CRC32C.checksum(data) == referenceCRC32C(data))
        #expect(crcOfSlice(data, 5..<data.count) == referenceCRC32C(data[5...]))
    }

    @Test("appending the little-endian CRC yields the CRC32C residue")
    func residue() {
        for length in [0, 1, 100, 768, 1000, 2500] {
            var data = randomBytes(length, seed: UInt64(length) + 7)
            let crc = CRC32C.checksum(data)
            withUnsafeBytes(of: crc.littleEndian) { data.append(contentsOf: $0) }
            #expect(CRC32C.checksum(data) == 0x4867_4BC7)
        }
    }

    @Test("every single-bit change is detected")
    func singleBitFlips() {
        let data = randomBytes(1100, seed: 8)
        let original = CRC32C.checksum(data)
        var copy = data
        var undetected: [Int] = []
        for bit in 0..<(data.count * 8) {
            copy[bit / 8] ^= 1 << (bit % 8)
            if CRC32C.checksum(copy) == original { undetected.append(bit) }
            copy[bit / 8] ^= 1 << (bit % 8)
        }
        #expect(undetected.isEmpty)
    }

    @Test("checksum is deterministic and the results are stable across calls")
    func deterministic() {
        let data = randomBytes(2000, seed: 9)
        let first = CRC32C.checksum(data)
        for _ in 0..<10 { #expect(CRC32C.checksum(data) == first) }
    }

    #if os(Linux) && (arch(x86_64) || arch(arm64))
        @Test("hardware acceleration follows the CPU features in /proc/cpuinfo")
        func hardwareDetection() throws {
            let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
            let flags = cpuinfo.split(separator: "\n")
                .filter { $0.hasPrefix("flags") || $0.hasPrefix("Features") }
                .flatMap { $0.split(separator: " ") }
            #if arch(x86_64)
                let hasCRCInstructions = flags.contains("sse4_2")
            #else
                let hasCRCInstructions = flags.contains("crc32")
            #endif
            try #require(!flags.isEmpty)
            #expect(CRC32C.isHardwareAccelerated == hasCRCInstructions)
        }
    #endif
}
