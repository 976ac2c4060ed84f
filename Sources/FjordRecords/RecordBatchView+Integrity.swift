extension RecordBatchView {
    /// Checks a stored batch before it is served or trusted: header tags, CRC32C, a non-zero
    /// record count, that its base offset is `expectedBaseOffset` (the previous batch's next
    /// offset, or the index entry or segment base it was located from), and that its partition
    /// leader epoch is not below `previousEpoch`.
    ///
    /// The base offset and epoch sit outside the CRC (the broker stamps them), so these
    /// continuity checks are what protects them. One pass of hardware CRC32C over the batch.
    ///
    /// - Returns: `nil` when the batch is sound, otherwise what is wrong with it, for people.
    public func storedBatchProblem(expectedBaseOffset: Int64, previousEpoch: Int32?) -> String? {
        for (position, tag) in RecordBatchLayout.tags where bytes[position] != tag {
            return "batch header tag at byte \(position) is 0x\(String(bytes[position], radix: 16)), expected 0x\(String(tag, radix: 16))"
        }
        let header = self.header
        guard isCRCValid else { return "CRC32C mismatch (stored 0x\(String(header.crc32c, radix: 16)))" }
        guard header.recordCount > 0 else { return "batch with no records" }
        guard header.baseOffset == expectedBaseOffset else {
            return "batch base offset \(header.baseOffset), expected \(expectedBaseOffset)"
        }
        if let previousEpoch, header.partitionLeaderEpoch < previousEpoch {
            return "partition leader epoch \(header.partitionLeaderEpoch) is below the previous batch's \(previousEpoch)"
        }
        return nil
    }
}
