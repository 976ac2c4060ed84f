import FjordBroker
import FjordClient
import FjordProto
import FjordProtocol
import FjordWire
import FjordTLS
import Foundation
import Logging
import NIOCore
import SwiftProtobuf
import Testing

/// A broker with mutual TLS and its own CA, and client certificates for `admin` (a super user),
/// `alice` and `bob`.
struct SecuredBroker {
    let broker: Broker
    let certificates: String

    var port: Int { broker.tlsAddress!.port! }
    var caPath: String { certificates + "/ca.pem" }

    /// A connection presenting `name`'s certificate (none for `nil`).
    func connect(as name: String?) async throws -> FjordConnection {
        let tls = ClientTLSConfiguration(
            trustRootsPath: caPath, certificateChainPath: name.map { "\(certificates)/\($0).pem" },
            privateKeyPath: name.map { "\(certificates)/\($0)-key.pem" })
        return try await FjordConnection.connect(host: "127.0.0.1", port: port, tls: tls, clientID: name ?? "anonymous")
    }

    /// An SDK client presenting `name`'s certificate.
    func client(as name: String) -> FjordClient {
        var configuration = FjordClientConfiguration(brokers: [BrokerAddress(host: "127.0.0.1", port: port)])
        configuration.tls = ClientTLSConfiguration(
            trustRootsPath: caPath, certificateChainPath: "\(certificates)/\(name).pem",
            privateKeyPath: "\(certificates)/\(name)-key.pem")
        return FjordClient(configuration: configuration)
    }
}

/// Starts a broker requiring client certificates, with `authorizer.enable` as asked and
/// `User:admin` as super user; `clientURIs` adds URI names to the client certificates.
func withSecuredBroker(
    authorizer: Bool = true, clientURIs: [String: [String]] = [:], _ configure: (inout BrokerConfiguration) -> Void = { _ in },
    _ body: (SecuredBroker) async throws -> Void
) async throws {
    let certificates = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-certs-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: certificates, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: certificates) }
    let ca = try CertificateAuthority.generate()
    try ca.write(to: certificates)
    let server = try ca.issueServerCertificate(commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
    try server.write(to: certificates, name: "server")
    for name in ["admin", "alice", "bob"] {
        try ca.issueClientCertificate(commonName: name, uris: clientURIs[name] ?? []).write(to: certificates, name: name)
    }
    try await withBroker({ configuration in
        configuration.tlsCertificatePath = certificates + "/server.pem"
        configuration.tlsPrivateKeyPath = certificates + "/server-key.pem"
        configuration.tlsClientCAPath = certificates + "/ca.pem"
        configuration.requireClientCertificate = true
        configuration.authorizerEnabled = authorizer
        configuration.superUsers = [Principal(name: "admin")]
        configure(&configuration)
    }) { broker in
        try await body(SecuredBroker(broker: broker.broker, certificates: certificates))
    }
}

/// The error code of a unary call, `.none` when it succeeds.
func outcome<Response: SwiftProtobuf.Message>(
    _ connection: FjordConnection, _ method: Fjord_V1_Method, _ request: some SwiftProtobuf.Message, as: Response.Type
) async throws -> Fjord_V1_ErrorCode {
    do {
        _ = try await connection.unary(method, request, as: Response.self)
        return .none
    } catch let error as FjordClientError {
        return error.code
    }
}

func acl(
    _ principal: String, _ operation: Fjord_V1_AclOperation, _ type: Fjord_V1_AclResourceType, _ name: String = "",
    pattern: Fjord_V1_AclPatternType = .literal, _ permission: Fjord_V1_AclPermission = .allow
) -> Fjord_V1_Acl {
    var acl = Fjord_V1_Acl()
    acl.principal = principal
    acl.resourceType = type
    acl.resourceName = name
    acl.patternType = pattern
    acl.operation = operation
    acl.permission = permission
    return acl
}

func replaceACLs(_ admin: FjordConnection, with acls: [Fjord_V1_Acl]) async throws {
    var delete = Fjord_V1_DeleteAclsRequest()
    delete.filters = [Fjord_V1_AclFilter()]
    let _: Fjord_V1_DeleteAclsResponse = try await admin.unary(.deleteAcls, delete)
    var create = Fjord_V1_CreateAclsRequest()
    create.acls = acls
    let _: Fjord_V1_CreateAclsResponse = try await admin.unary(.createAcls, create)
}

@Suite struct AuthorizationTests {
    /// One method: the operation it needs, on which kind of resource, and how to call it. `call`
    /// returns the error code (`.none` on success); listings return `TOPIC_AUTHORIZATION_FAILED`
    /// when the topic is hidden from them.
    struct Method: Sendable, CustomStringConvertible {
        var name: String
        var operation: Fjord_V1_AclOperation
        var resource: Fjord_V1_AclResourceType
        /// Whether the admin creates the topic (and one record) before the call.
        var needsTopic = true
        var call: @Sendable (_ alice: FjordConnection, _ topic: String) async throws -> Fjord_V1_ErrorCode
        var description: String { name }
    }

    static let methods: [Method] = [
        Method(name: "GetMetadata(topic)", operation: .describe, resource: .topic) { alice, topic in
            var request = Fjord_V1_GetMetadataRequest()
            request.topics = [topic]
            let response: Fjord_V1_GetMetadataResponse = try await alice.unary(.getMetadata, request)
            return response.topics[0].error.code
        },
        Method(name: "GetMetadata(all)", operation: .describe, resource: .topic) { alice, topic in
            let response: Fjord_V1_GetMetadataResponse = try await alice.unary(.getMetadata, Fjord_V1_GetMetadataRequest())
            return response.topics.contains { $0.topic.name == topic } ? .none : .topicAuthorizationFailed
        },
        Method(name: "ListTopics", operation: .describe, resource: .topic) { alice, topic in
            let response: Fjord_V1_ListTopicsResponse = try await alice.unary(.listTopics, Fjord_V1_ListTopicsRequest())
            return response.names.contains(topic) ? .none : .topicAuthorizationFailed
        },
        Method(name: "DescribeTopic", operation: .describe, resource: .topic) { alice, topic in
            var request = Fjord_V1_DescribeTopicRequest()
            request.name = topic
            return try await outcome(alice, .describeTopic, request, as: Fjord_V1_DescribeTopicResponse.self)
        },
        Method(name: "CreateTopic", operation: .create, resource: .topic, needsTopic: false) { alice, topic in
            var request = Fjord_V1_CreateTopicRequest()
            request.name = topic
            request.partitions = 1
            return try await outcome(alice, .createTopic, request, as: Fjord_V1_CreateTopicResponse.self)
        },
        Method(name: "DeleteTopic", operation: .delete, resource: .topic) { alice, topic in
            var request = Fjord_V1_DeleteTopicRequest()
            request.name = topic
            return try await outcome(alice, .deleteTopic, request, as: Fjord_V1_DeleteTopicResponse.self)
        },
        Method(name: "CreatePartitions", operation: .alter, resource: .topic) { alice, topic in
            var request = Fjord_V1_CreatePartitionsRequest()
            request.name = topic
            request.totalPartitions = 2
            return try await outcome(alice, .createPartitions, request, as: Fjord_V1_CreatePartitionsResponse.self)
        },
        Method(name: "AlterTopicConfig", operation: .alterConfigs, resource: .topic) { alice, topic in
            var request = Fjord_V1_AlterTopicConfigRequest()
            request.name = topic
            request.set = ["retention.ms": "3600000"]
            return try await outcome(alice, .alterTopicConfig, request, as: Fjord_V1_AlterTopicConfigResponse.self)
        },
        Method(name: "Produce", operation: .write, resource: .topic) { alice, topic in
            let responses = try await produce(alice, topic: topic, partition: 0, batches: [makeBatch(["from alice"])])
            return responses[0].error.code
        },
        Method(name: "Fetch", operation: .read, resource: .topic) { alice, topic in
            let result = try await fetch(alice, topic: topic, partition: 0, offset: 0)
            if result.error.code == .none { #expect(values(of: result.records) == ["seed"]) }
            return result.error.code
        },
        Method(name: "Subscribe", operation: .read, resource: .topic) { alice, topic in
            var request = Fjord_V1_SubscribeRequest()
            request.topic = topic
            request.offset = 0
            request.leaderEpoch = -1
            request.creditBytes = 1 << 20
            let stream = alice.openStream(.subscribe)
            try await stream.send(request)
            do {
                let frame = try #require(try await stream.next())
                let response = try Fjord_V1_SubscribeResponse(buffer: frame.payload)
                #expect(values(of: response.records) == ["seed"])
                try await stream.cancel()
                return .none
            } catch let error as FjordClientError {
                return error.code
            }
        },
        Method(name: "ListOffsets", operation: .describe, resource: .topic) { alice, topic in
            var request = Fjord_V1_ListOffsetsRequest()
            var partition = Fjord_V1_ListOffsetsPartition()
            partition.topic = topic
            partition.timestamp = -1
            partition.leaderEpoch = -1
            request.partitions = [partition]
            let response: Fjord_V1_ListOffsetsResponse = try await alice.unary(.listOffsets, request)
            return response.partitions[0].error.code
        },
        Method(name: "InitProducerId", operation: .write, resource: .topic) { alice, _ in
            var request = Fjord_V1_InitProducerIdRequest()
            request.producerID = -1
            request.producerEpoch = -1
            return try await outcome(alice, .initProducerID, request, as: Fjord_V1_InitProducerIdResponse.self)
        },
        Method(name: "CreateAcls", operation: .alter, resource: .cluster, needsTopic: false) { alice, _ in
            var request = Fjord_V1_CreateAclsRequest()
            request.acls = [acl("User:carol", .read, .topic, "elsewhere")]
            return try await outcome(alice, .createAcls, request, as: Fjord_V1_CreateAclsResponse.self)
        },
        Method(name: "ListAcls", operation: .describe, resource: .cluster, needsTopic: false) { alice, _ in
            try await outcome(alice, .listAcls, Fjord_V1_ListAclsRequest(), as: Fjord_V1_ListAclsResponse.self)
        },
        Method(name: "DeleteAcls", operation: .alter, resource: .cluster, needsTopic: false) { alice, _ in
            var request = Fjord_V1_DeleteAclsRequest()
            var filter = Fjord_V1_AclFilter()
            filter.principal = "User:nobody"
            request.filters = [filter]
            return try await outcome(alice, .deleteAcls, request, as: Fjord_V1_DeleteAclsResponse.self)
        },
    ]

    enum Scenario: String, CaseIterable {
        /// An ACL allows alice the operation.
        case allowed
        /// Only bob has an ACL: alice is not mentioned.
        case notMentioned
        /// Allowed, and denied by a literal deny: deny wins.
        case denied
        /// Allowed literally, denied by a prefix covering the topic.
        case deniedByPrefix
    }

    @Test(arguments: methods)
    func everyMethodIsCheckedForEveryKindOfEntry(_ method: Method) async throws {
        try await withSecuredBroker { broker in
            let admin = try await broker.connect(as: "admin")
            let alice = try await broker.connect(as: "alice")
            for scenario in Scenario.allCases {
                if scenario == .deniedByPrefix, method.resource == .cluster { continue }  // the cluster has no name
                let topic = "acl-\(method.name.filter(\.isLetter).lowercased())-\(scenario.rawValue.lowercased())"
                if method.needsTopic {
                    try await createTopic(admin, topic)
                    _ = try await produce(admin, topic: topic, partition: 0, batches: [makeBatch(["seed"])])
                }
                let name = method.resource == .cluster ? "" : topic
                let allow = acl("User:alice", method.operation, method.resource, name)
                let entries: [Fjord_V1_Acl] =
                    switch scenario {
                    case .allowed: [allow]
                    case .notMentioned: [acl("User:bob", method.operation, method.resource, name)]
                    case .denied: [allow, acl("User:alice", method.operation, method.resource, name, .deny)]
                    case .deniedByPrefix:
                        [allow, acl("User:alice", method.operation, .topic, String(topic.prefix(6)), pattern: .prefixed, .deny)]
                    }
                try await replaceACLs(admin, with: entries)
                let code = try await method.call(alice, topic)
                let expected: Fjord_V1_ErrorCode =
                    scenario == .allowed ? .none : method.resource == .cluster ? .clusterAuthorizationFailed : .topicAuthorizationFailed
                #expect(code == expected, "\(method.name), \(scenario): got \(code.name)")
            }
            try await alice.close()
            try await admin.close()
        }
    }

    @Test func revokingAnACLStopsAnOpenProduceStreamAndSubscription() async throws {
        try await withSecuredBroker { broker in
            let admin = try await broker.connect(as: "admin")
            try await createTopic(admin, "orders")
            try await replaceACLs(admin, with: [acl("User:alice", .write, .topic, "orders"), acl("User:alice", .read, .topic, "orders")])
            let alice = try await broker.connect(as: "alice")

            // A subscription at the log end, and a produce stream: both work.
            var subscribe = Fjord_V1_SubscribeRequest()
            subscribe.topic = "orders"
            subscribe.leaderEpoch = -1
            subscribe.creditBytes = 1 << 20
            let subscription = alice.openStream(.subscribe)
            try await subscription.send(subscribe)
            let stream = alice.openStream(.produce)
            try await stream.send(produceRequest(topic: "orders", partition: 0, requestID: 0, batch: makeBatch(["first"])), endOfStream: false)
            let first = try Fjord_V1_ProduceResponse(buffer: try #require(try await stream.next()).payload)
            #expect(first.error.code == .none)
            let pushed = try Fjord_V1_SubscribeResponse(buffer: try #require(try await subscription.next()).payload)
            #expect(values(of: pushed.records) == ["first"])

            // Revoked while both are open: the next request on the stream is refused, and so is
            // the next push of the subscription.
            var delete = Fjord_V1_DeleteAclsRequest()
            var filter = Fjord_V1_AclFilter()
            filter.principal = "User:alice"
            delete.filters = [filter]
            let deleted: Fjord_V1_DeleteAclsResponse = try await admin.unary(.deleteAcls, delete)
            #expect(deleted.deleted.count == 2)
            try await stream.send(produceRequest(topic: "orders", partition: 0, requestID: 1, batch: makeBatch(["second"])), endOfStream: true)
            let second = try Fjord_V1_ProduceResponse(buffer: try #require(try await stream.next()).payload)
            #expect(second.error.code == .topicAuthorizationFailed)
            #expect(second.error.message.contains("User:alice"))
            #expect(second.error.message.contains("write"))

            _ = try await produce(admin, topic: "orders", partition: 0, batches: [makeBatch(["by admin"])])
            await #expect {
                _ = try await subscription.next()
            } throws: { error in
                (error as? FjordClientError)?.code == .topicAuthorizationFailed
            }
            // Nothing alice sent after the revocation was written.
            let all = try await fetch(admin, topic: "orders", partition: 0, offset: 0)
            #expect(values(of: all.records) == ["first", "by admin"])

            // Denials are counted by principal and operation.
            let metrics = broker.broker.metrics.render()
            #expect(metrics.contains(#"fjord_authorization_denied_total{principal="User:alice",operation="write"} 1"#))
            #expect(metrics.contains(#"fjord_authorization_denied_total{principal="User:alice",operation="read"} 1"#))
            try await alice.close()
            try await admin.close()
        }
    }

    @Test func aSuperUserMayDoEverythingWithNoACLs() async throws {
        try await withSecuredBroker { broker in
            let client = broker.client(as: "admin")
            #expect(try await client.principal() == "User:admin")
            try await client.admin.createTopic("ledger", partitions: 2)
            try await client.admin.alterTopicConfig("ledger", set: ["retention.ms": "60000"])
            try await client.admin.createPartitions("ledger", total: 3)
            #expect(try await client.admin.describeTopic("ledger").configs["retention.ms"] == "60000")
            let producer = client.makeProducer()
            let sent = try await producer.send(ProducerRecord(topic: "ledger", key: "k", value: "v"))
            try await producer.close()
            #expect(try await client.admin.listOffsets(topic: "ledger", partition: sent.partition, at: .latest) == 1)
            try await client.admin.createACLs([ACLBinding(principal: "User:bob", resourceType: .topic, resourceName: "ledger", operation: .read)])
            #expect(try await client.admin.listACLs().count == 1)
            try await client.admin.deleteTopic("ledger")
            #expect(try await client.admin.deleteACLs([ACLBindingFilter()]).count == 1)
            await client.close()
        }
    }

    @Test func listingsShowOnlyTopicsThePrincipalMayDescribe() async throws {
        try await withSecuredBroker { broker in
            let admin = broker.client(as: "admin")
            for topic in ["public.news", "public.weather", "secret", "other"] { try await admin.admin.createTopic(topic) }
            try await admin.admin.createACLs([
                ACLBinding(principal: "User:alice", resourceType: .topic, resourceName: "public.", patternType: .prefixed, operation: .read),
                ACLBinding(principal: "User:alice", resourceType: .topic, resourceName: "other", operation: .alterConfigs),
                ACLBinding(principal: "User:bob", resourceType: .topic, resourceName: "*", operation: .describe),
            ])
            let alice = broker.client(as: "alice")
            #expect(try await alice.admin.listTopics() == ["public.news", "public.weather"])
            let bob = broker.client(as: "bob")
            #expect(try await bob.admin.listTopics() == ["other", "public.news", "public.weather", "secret"])
            // alter-configs implies describe-configs, not describe: "other" stays hidden from alice.
            await #expect { _ = try await alice.admin.describeTopic("other") } throws: {
                ($0 as? FjordClientError)?.code == .topicAuthorizationFailed
            }
            // A topic that does not exist answers the same as one that is hidden: nothing leaks.
            await #expect { _ = try await alice.admin.describeTopic("no-such-topic") } throws: {
                ($0 as? FjordClientError)?.code == .topicAuthorizationFailed
            }
            // describe without describe-configs: partitions, but no configuration.
            try await admin.admin.alterTopicConfig("public.news", set: ["retention.ms": "60000"])
            #expect(try await alice.admin.describeTopic("public.news").configs.isEmpty)
            #expect(try await bob.admin.describeTopic("public.news").configs.isEmpty)
            #expect(try await admin.admin.describeTopic("public.news").configs == ["retention.ms": "60000"])
            for client in [admin, alice, bob] { await client.close() }
        }
    }

    @Test func withTheAuthorizerOffEverythingIsAllowedAsBefore() async throws {
        try await withSecuredBroker(authorizer: false) { broker in
            let admin = broker.client(as: "admin")
            // Entries that would deny alice everything are stored, and not enforced.
            try await admin.admin.createACLs([ACLBinding(principal: "User:alice", resourceType: .topic, resourceName: "*", operation: .all, permission: .deny)])
            let alice = broker.client(as: "alice")
            #expect(try await alice.principal() == "User:alice")
            try await alice.admin.createTopic("free")
            #expect(try await alice.admin.listTopics() == ["free"])
            let producer = alice.makeProducer()
            _ = try await producer.send(ProducerRecord(topic: "free", value: "v"))
            try await producer.close()
            #expect(try await alice.admin.listACLs().count == 1)
            try await alice.admin.deleteTopic("free")
            await admin.close()
            await alice.close()
        }
    }

    @Test func aclsSurviveARestart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-acl-restart-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await withBroker(directory: directory) { broker in
            let connection = try await broker.connect()
            var create = Fjord_V1_CreateAclsRequest()
            create.acls = [acl("User:alice", .read, .topic, "orders"), acl("User:bob", .all, .group, "g.", pattern: .prefixed, .deny)]
            let created: Fjord_V1_CreateAclsResponse = try await connection.unary(.createAcls, create)
            #expect(created.created == 2)
            let again: Fjord_V1_CreateAclsResponse = try await connection.unary(.createAcls, create)
            #expect(again.created == 0)
            try await connection.close()
        }
        try await withBroker(directory: directory) { broker in
            let connection = try await broker.connect()
            let listed: Fjord_V1_ListAclsResponse = try await connection.unary(.listAcls, Fjord_V1_ListAclsRequest())
            #expect(listed.acls.map(\.principal) == ["User:alice", "User:bob"])
            #expect(listed.acls[1].patternType == .prefixed && listed.acls[1].permission == .deny)
            // Invalid entries are refused with the reason, and nothing of the request is added.
            var bad = Fjord_V1_CreateAclsRequest()
            bad.acls = [acl("User:carol", .read, .topic, "x"), acl("carol", .read, .topic, "x")]
            let code = try await outcome(connection, .createAcls, bad, as: Fjord_V1_CreateAclsResponse.self)
            #expect(code == .invalidRequest)
            let after: Fjord_V1_ListAclsResponse = try await connection.unary(.listAcls, Fjord_V1_ListAclsRequest())
            #expect(after.acls.count == 2)
            try await connection.close()
        }
    }

    @Test func principalsComeFromTheConfiguredCertificateName() async throws {
        try await withSecuredBroker(
            clientURIs: ["alice": ["spiffe://example.org/ns/prod/sa/alice"]],
            { configuration in
                configuration.principalSource = .uri
                configuration.principalMappingRules = #"RULE:^spiffe:\/\/example\.org\/ns\/([^\/]+)\/sa\/(.+)$/$2.$1/"#
            }
        ) { broker in
            let alice = try await broker.connect(as: "alice")
            #expect(alice.handshake.principal == "User:alice.prod")
            try await alice.close()
            // bob's certificate has no URI: no principal, the handshake is refused.
            await #expect {
                _ = try await broker.connect(as: "bob")
            } throws: { error in
                (error as? FjordClientError)?.code == .authenticationFailed
            }
        }
    }

    @Test func withoutAClientCertificateTheClientIsAnonymous() async throws {
        try await withBroker { broker in
            let connection = try await broker.connect()
            #expect(connection.handshake.principal == "User:ANONYMOUS")
            try await connection.close()
        }
    }
}
