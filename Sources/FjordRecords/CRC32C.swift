import CFjordCRC32C

/// CRC32C (Castagnoli), the checksum of Fjord record batches.
///
/// Uses the CPU's CRC instructions where present (SSE4.2 on x86-64, the CRC extension on ARMv8).
///
/// ```swift
/// let crc = CRC32C.checksum(bytes)           // one shot
/// var running = CRC32C.update(0, first)      // or in pieces
/// running = CRC32C.update(running, second)
/// ```
public enum CRC32C {
    /// The CRC32C of `bytes`.
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        update(0, bytes)
    }

    /// Extends `crc` (the checksum of earlier bytes, or 0) over `bytes`.
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return cfjord_crc32c_update(crc, base, bytes.count)
    }

    /// The CRC32C of an array of bytes.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(0, $0) }
    }

    /// Whether the hardware path is in use on this CPU.
    public static var isHardwareAccelerated: Bool {
        cfjord_crc32c_is_hardware_accelerated() != 0
    }
}
