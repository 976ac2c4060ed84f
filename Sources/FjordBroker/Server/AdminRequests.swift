import FjordProto
import FjordProtocol
import FjordStorage
import Logging
import NIOCore
import SwiftProtobuf

/// The unary requests other than fetch: topic administration, metadata and offset lookups.
/// Runs as a task off the event loop; the connection handler sends the result. Each request is
/// checked against the ACLs for the connection's principal first (docs/security.md lists the
/// operation each needs), so a denied request reveals nothing, not even whether a topic exists.
struct AdminRequests: Sendable {
    let broker: BrokerContext
    /// Who is asking.
    let scope: AuthorizationScope

    func handle(_ method: Fjord_V1_Method, payload: ByteBuffer) async throws(BrokerError) -> ByteBuffer {
        switch method {
        case .getMetadata:
            return try encode(try await metadata(try decode(payload)))
        case .createTopic:
            let request: Fjord_V1_CreateTopicRequest = try decode(payload)
            // Create on the cluster (any topic) or on the topic's name, as in Kafka.
            if !scope.allows(.create, .cluster) { try scope.require(.create, .topic, request.name) }
            let record = try await broker.topics.create(
                name: request.name, partitions: Int(request.partitions), configs: request.configs)
            var response = Fjord_V1_CreateTopicResponse()
            response.topic = topicInfo(record)
            return try encode(response)
        case .deleteTopic:
            let request: Fjord_V1_DeleteTopicRequest = try decode(payload)
            try scope.require(.delete, .topic, request.name)
            let deleted = try await broker.topics.delete(name: request.name)
            for index in deleted.partitions.indices { broker.metrics.removePartition(topic: request.name, partition: index) }
            return try encode(Fjord_V1_DeleteTopicResponse())
        case .listTopics:
            let _: Fjord_V1_ListTopicsRequest = try decode(payload)
            var response = Fjord_V1_ListTopicsResponse()
            response.names = broker.topics.allTopics().map(\.name).filter { scope.allows(.describe, .topic, $0) }
            return try encode(response)
        case .describeTopic:
            let request: Fjord_V1_DescribeTopicRequest = try decode(payload)
            try scope.require(.describe, .topic, request.name)
            var response = Fjord_V1_DescribeTopicResponse()
            response.topic = topicInfo(try broker.topics.topicRecord(request.name))
            if !scope.allows(.describeConfigs, .topic, request.name) { response.topic.configs = [:] }
            return try encode(response)
        case .createPartitions:
            let request: Fjord_V1_CreatePartitionsRequest = try decode(payload)
            try scope.require(.alter, .topic, request.name)
            let record = try await broker.topics.createPartitions(name: request.name, total: Int(request.totalPartitions))
            var response = Fjord_V1_CreatePartitionsResponse()
            response.topic = topicInfo(record)
            return try encode(response)
        case .alterTopicConfig:
            let request: Fjord_V1_AlterTopicConfigRequest = try decode(payload)
            try scope.require(.alterConfigs, .topic, request.name)
            let record = try await broker.topics.alterConfig(name: request.name, set: request.set, remove: request.remove)
            var response = Fjord_V1_AlterTopicConfigResponse()
            response.topic = topicInfo(record)
            return try encode(response)
        case .listOffsets:
            return try encode(try await listOffsets(try decode(payload)))
        case .initProducerID:
            let request: Fjord_V1_InitProducerIdRequest = try decode(payload)
            // Kafka's rule: a producer id for whoever may write to some topic (each produce is
            // still checked against its own topic).
            guard scope.authorizer.allowsAny(scope.principal, host: scope.host, .write, .topic) else {
                throw scope.denied(.write, .topic, "*")
            }
            var response = Fjord_V1_InitProducerIdResponse()
            // Ids start at 1: (-1 or 0, -1 or 0) asks for a new id; (id >= 1, epoch >= 0) for an epoch bump.
            let asksForNewID = (request.producerID == -1 || request.producerID == 0) && (-1...0).contains(request.producerEpoch)
            if !asksForNewID {
                guard request.producerID >= 1, request.producerEpoch >= 0 else {
                    throw BrokerError(
                        .invalidRequest,
                        "producer id \(request.producerID) with epoch \(request.producerEpoch) is neither a new-id request "
                            + "(producer_id -1 or 0 with epoch -1 or 0) nor an epoch bump (producer_id >= 1, epoch >= 0)")
                }
                // An epoch bump for an id this broker handed out. Past the epoch range, a new id.
                guard try await broker.producerIDs.mayHaveIssued(request.producerID) else {
                    throw BrokerError(
                        .unknownProducerID,
                        "producer id \(request.producerID) was never handed out; ask for a new one with producer_id = -1")
                }
                if request.producerEpoch < Int32(Int16.max) {
                    response.producerID = request.producerID
                    response.producerEpoch = request.producerEpoch + 1
                    return try encode(response)
                }
            }
            response.producerID = try await broker.producerIDs.next()
            response.producerEpoch = 0
            return try encode(response)
        case .createAcls:
            let request: Fjord_V1_CreateAclsRequest = try decode(payload)
            try scope.require(.alter, .cluster)
            var entries: [AccessControlEntry] = []
            for acl in request.acls { entries.append(try AccessControlEntry(wire: acl)) }
            var response = Fjord_V1_CreateAclsResponse()
            response.created = UInt32(try await scope.authorizer.create(entries))
            broker.logger.notice(
                "ACL entries created", metadata: ["by": "\(scope.principal)", "entries": "\(entries.map(\.description))"])
            return try encode(response)
        case .listAcls:
            let request: Fjord_V1_ListAclsRequest = try decode(payload)
            try scope.require(.describe, .cluster)
            var response = Fjord_V1_ListAclsResponse()
            response.acls = scope.authorizer.list.entries(matching: try AccessControlFilter(wire: request.filter)).map(\.wireValue)
            return try encode(response)
        case .deleteAcls:
            let request: Fjord_V1_DeleteAclsRequest = try decode(payload)
            try scope.require(.alter, .cluster)
            guard !request.filters.isEmpty else { throw BrokerError(.invalidRequest, "DeleteAcls needs at least one filter") }
            var filters: [AccessControlFilter] = []
            for filter in request.filters { filters.append(try AccessControlFilter(wire: filter)) }
            var response = Fjord_V1_DeleteAclsResponse()
            let deleted = try await scope.authorizer.delete(matching: filters)
            response.deleted = deleted.map(\.wireValue)
            broker.logger.notice(
                "ACL entries deleted", metadata: ["by": "\(scope.principal)", "entries": "\(deleted.map(\.description))"])
            return try encode(response)
        default:
            throw BrokerError(.unknownMethod, "method \(method.rawValue) is not a unary request")
        }
    }

    private func decode<M: SwiftProtobuf.Message>(_ payload: ByteBuffer) throws(BrokerError) -> M {
        do { return try M(checkingWireTypes: payload) } catch {
            throw BrokerError(.malformedMessage, "not a valid \(M.protoMessageName): \(error)")
        }
    }

    private func encode(_ message: some SwiftProtobuf.Message) throws(BrokerError) -> ByteBuffer {
        do { return try message.serializedBuffer() } catch {
            throw BrokerError(.unknown, "encoding \(type(of: message).protoMessageName) failed: \(error)")
        }
    }

    func topicInfo(_ record: TopicRecord) -> Fjord_V1_TopicInfo {
        var info = Fjord_V1_TopicInfo()
        info.name = record.name
        info.topicID = record.topicID
        info.configs = record.configs
        info.partitions = record.partitions.enumerated().map { index, partitionRecord in
            var partition = Fjord_V1_PartitionInfo()
            partition.partition = UInt32(index)
            partition.leaderID = partitionRecord.leaderID
            partition.leaderEpoch = partitionRecord.leaderEpoch
            partition.replicas = partitionRecord.replicas
            partition.inSyncReplicas = partitionRecord.replicas
            if let live = try? broker.registry.partition(topic: record.name, index: index) {
                partition.logStartOffset = live.log.logStartOffset
                partition.highWatermark = live.log.logEndOffset
            } else {
                partition.leaderID = -1  // offline
            }
            return partition
        }
        return info
    }

    private func metadata(_ request: Fjord_V1_GetMetadataRequest) async throws(BrokerError) -> Fjord_V1_GetMetadataResponse {
        var response = Fjord_V1_GetMetadataResponse()
        response.clusterID = broker.clusterID
        var node = Fjord_V1_BrokerInfo()
        node.nodeID = broker.configuration.nodeID
        node.host = broker.advertisedHost
        node.port = UInt32(broker.advertisedPort)
        response.brokers = [node]
        if request.topics.isEmpty {
            response.topics = broker.topics.allTopics().filter { scope.allows(.describe, .topic, $0.name) }.map { record in
                var metadata = Fjord_V1_TopicMetadata()
                metadata.topic = topicInfo(record)
                return metadata
            }
        } else {
            for name in request.topics {
                var metadata = Fjord_V1_TopicMetadata()
                do throws(BrokerError) {
                    try scope.require(.describe, .topic, name)
                    metadata.topic = topicInfo(try broker.topics.topicRecord(name))
                } catch {
                    metadata.error = error.wireValue
                    metadata.topic.name = name
                }
                response.topics.append(metadata)
            }
        }
        return response
    }

    private func listOffsets(_ request: Fjord_V1_ListOffsetsRequest) async throws(BrokerError) -> Fjord_V1_ListOffsetsResponse {
        var response = Fjord_V1_ListOffsetsResponse()
        for wanted in request.partitions {
            var result = Fjord_V1_ListOffsetsResult()
            result.topic = wanted.topic
            result.partition = wanted.partition
            do throws(BrokerError) {
                try scope.require(.describe, .topic, wanted.topic)
                let partition = try broker.registry.partition(topic: wanted.topic, index: Int(wanted.partition))
                try partition.checkLeaderEpoch(wanted.leaderEpoch)
                result.leaderEpoch = partition.leaderEpoch
                switch wanted.timestamp {
                case -2: result.offset = partition.log.logStartOffset
                case -1: result.offset = partition.log.logEndOffset
                case let timestamp where timestamp >= 0:
                    do {
                        result.offset = try await partition.log.offset(forTimestamp: timestamp) ?? -1
                    } catch {
                        throw BrokerError(error, topic: wanted.topic, partition: Int(wanted.partition))
                    }
                default:
                    throw BrokerError(.invalidRequest, "timestamp \(wanted.timestamp) is neither -2, -1 nor a time in ms")
                }
            } catch {
                result.error = error.wireValue
                result.offset = -1
            }
            response.partitions.append(result)
        }
        return response
    }
}
