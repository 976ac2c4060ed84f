import FjordRecords
import Logging
import SystemPackage

/// Persists a log's idempotent-producer state across restarts.
///
/// A clean close writes `producer-state.snapshot`: the table as of the log end offset. Opening
/// loads the snapshot and replays the headers of every batch at or after its offset, so after an
/// unclean stop the state is rebuilt from the snapshot of the last clean close plus the log since
/// (or from the whole log when there is no usable snapshot). Replay reads only batch headers.
struct ProducerStateLoader {
    let directory: FilePath
    let configuration: LogConfiguration
    let logger: Logger

    var snapshotPath: FilePath { directory.appending(ProducerStateTable.snapshotFile) }

    /// Builds the table for a freshly recovered log.
    func load(segments: [SegmentState], now: Int64) -> ProducerStateTable {
        let logStart = segments[0].baseOffset
        let logEnd = segments[segments.count - 1].nextOffset
        var table = ProducerStateTable()
        var replayFrom = logStart
        if let bytes = FileSystem.readFile(snapshotPath) {
            if let (snapshot, offset) = ProducerStateTable.decodeSnapshot(bytes), offset <= logEnd {
                table = snapshot
                replayFrom = max(offset, logStart)
            } else {
                logger.warning(
                    "ignoring producer state snapshot",
                    metadata: [
                        "log.directory": "\(directory)",
                        "reason": "damaged, of another version, or past the log end; rebuilding from the log",
                    ])
            }
        }
        var replayed = 0
        for segment in segments where segment.nextOffset > replayFrom && !segment.isEmpty {
            let bytes = segment.segment.log.bytes(0..<segment.size)
            var iterator = FramedBatchIterator(bytes)
            var expected = segment.baseOffset
            while let element = iterator.next() {
                let header = element.batch.header
                // Unverified bytes: stop at an offset that does not continue the log (damage,
                // which the read path reports), before any arithmetic on it.
                guard header.baseOffset == expected else { break }
                expected = header.lastOffset &+ 1
                guard header.baseOffset >= replayFrom, header.producerID >= 0 else { continue }
                table.record(header)
                replayed += 1
            }
        }
        table.expire(before: now - configuration.producerIDExpirationMilliseconds)
        if replayed > 0 || !table.producers.isEmpty {
            logger.debug(
                "loaded producer state",
                metadata: [
                    "log.directory": "\(directory)", "producers": "\(table.producers.count)",
                    "replayed_batches": "\(replayed)", "replayed_from": "\(replayFrom)",
                ])
        }
        return table
    }

    /// Writes `table` as of `offset` atomically.
    func writeSnapshot(_ table: ProducerStateTable, offset: Int64) throws(StorageError) {
        try FileSystem.writeAtomically(bytes: table.encodeSnapshot(offset: offset), to: snapshotPath, directory: directory)
    }

    /// Removes the snapshot, if any.
    func removeSnapshot() throws(StorageError) {
        if FileSystem.exists(snapshotPath) { try FileSystem.remove(snapshotPath) }
    }
}
