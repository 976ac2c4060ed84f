public import FjordProto

/// Topic and offset administration.
///
/// ```swift
/// let admin = client.admin
/// try await admin.createTopic("orders", partitions: 6, configs: ["retention.ms": "86400000"])
/// for topic in try await admin.listTopics() { print(topic) }
/// let end = try await admin.listOffsets(topic: "orders", partition: 0, at: .latest)
/// ```
public struct FjordAdmin: Sendable {
    let client: FjordClient

    /// Where to look up an offset.
    public enum OffsetSpec: Sendable, Hashable {
        /// The log start offset: the first offset still stored.
        case earliest
        /// The log end offset: the offset the next record will get.
        case latest
        /// The first offset whose batch holds a record with a timestamp at or after this one (ms).
        case timestamp(Int64)

        var wireValue: Int64 {
            switch self {
            case .earliest: -2
            case .latest: -1
            case .timestamp(let milliseconds): milliseconds
            }
        }
    }

    /// Creates a topic and returns its description.
    @discardableResult
    public func createTopic(_ name: String, partitions: Int = 1, configs: [String: String] = [:]) async throws
        -> Fjord_V1_TopicInfo
    {
        var request = Fjord_V1_CreateTopicRequest()
        request.name = name
        request.partitions = UInt32(clamping: partitions)
        request.configs = configs
        let response: Fjord_V1_CreateTopicResponse = try await client.call(.createTopic, request)
        client.forgetMetadata(topic: name)
        return response.topic
    }

    /// Deletes a topic and its data.
    public func deleteTopic(_ name: String) async throws {
        var request = Fjord_V1_DeleteTopicRequest()
        request.name = name
        let _: Fjord_V1_DeleteTopicResponse = try await client.call(.deleteTopic, request)
        client.forgetMetadata(topic: name)
    }

    /// The names of every topic, sorted.
    public func listTopics() async throws -> [String] {
        let response: Fjord_V1_ListTopicsResponse = try await client.call(.listTopics, Fjord_V1_ListTopicsRequest())
        return response.names.sorted()
    }

    /// A topic's partitions (leader epochs, log start offsets, high watermarks) and configuration.
    public func describeTopic(_ name: String) async throws -> Fjord_V1_TopicInfo {
        var request = Fjord_V1_DescribeTopicRequest()
        request.name = name
        let response: Fjord_V1_DescribeTopicResponse = try await client.call(.describeTopic, request)
        return response.topic
    }

    /// Raises a topic's partition count to `total`.
    @discardableResult
    public func createPartitions(_ name: String, total: Int) async throws -> Fjord_V1_TopicInfo {
        var request = Fjord_V1_CreatePartitionsRequest()
        request.name = name
        request.totalPartitions = UInt32(clamping: total)
        let response: Fjord_V1_CreatePartitionsResponse = try await client.call(.createPartitions, request)
        client.forgetMetadata(topic: name)
        return response.topic
    }

    /// Sets and removes topic configuration keys.
    @discardableResult
    public func alterTopicConfig(_ name: String, set: [String: String] = [:], remove: [String] = []) async throws
        -> Fjord_V1_TopicInfo
    {
        var request = Fjord_V1_AlterTopicConfigRequest()
        request.name = name
        request.set = set
        request.remove = remove
        let response: Fjord_V1_AlterTopicConfigResponse = try await client.call(.alterTopicConfig, request)
        return response.topic
    }

    /// Looks up one offset of one partition. For ``OffsetSpec/timestamp(_:)`` the answer is `nil`
    /// when no record is that recent.
    public func listOffsets(topic: String, partition: Int, at spec: OffsetSpec) async throws -> Int64? {
        let results = try await listOffsets([(topic, partition, spec)])
        return results[0]
    }

    /// Looks up several offsets in one request; answers are in request order.
    public func listOffsets(_ queries: [(topic: String, partition: Int, spec: OffsetSpec)]) async throws -> [Int64?] {
        var request = Fjord_V1_ListOffsetsRequest()
        request.partitions = queries.map { query in
            var partition = Fjord_V1_ListOffsetsPartition()
            partition.topic = query.topic
            partition.partition = UInt32(clamping: query.partition)
            partition.timestamp = query.spec.wireValue
            partition.leaderEpoch = -1
            return partition
        }
        let response: Fjord_V1_ListOffsetsResponse = try await client.call(.listOffsets, request)
        return try response.partitions.map { result in
            if result.hasError, result.error.code != .none { throw FjordClientError(result.error) }
            return result.offset < 0 ? nil : result.offset
        }
    }

    // MARK: Access control

    /// Adds ACL entries (all or none; needs `alter` on the cluster) and returns how many were new.
    ///
    /// ```swift
    /// try await admin.createACLs([
    ///     ACLBinding(principal: "User:billing", resourceType: .topic, resourceName: "orders", operation: .write),
    /// ])
    /// ```
    @discardableResult
    public func createACLs(_ bindings: [ACLBinding]) async throws -> Int {
        var request = Fjord_V1_CreateAclsRequest()
        request.acls = bindings.map(\.wireValue)
        let response: Fjord_V1_CreateAclsResponse = try await client.call(.createAcls, request)
        return Int(response.created)
    }

    /// The ACL entries `filter` selects (needs `describe` on the cluster).
    public func listACLs(_ filter: ACLBindingFilter = ACLBindingFilter()) async throws -> [ACLBinding] {
        var request = Fjord_V1_ListAclsRequest()
        request.filter = filter.wireValue
        let response: Fjord_V1_ListAclsResponse = try await client.call(.listAcls, request)
        return response.acls.map(ACLBinding.init(wire:))
    }

    /// Deletes every ACL entry one of `filters` selects (needs `alter` on the cluster) and returns them.
    @discardableResult
    public func deleteACLs(_ filters: [ACLBindingFilter]) async throws -> [ACLBinding] {
        var request = Fjord_V1_DeleteAclsRequest()
        request.filters = filters.map(\.wireValue)
        let response: Fjord_V1_DeleteAclsResponse = try await client.call(.deleteAcls, request)
        return response.deleted.map(ACLBinding.init(wire:))
    }
}
