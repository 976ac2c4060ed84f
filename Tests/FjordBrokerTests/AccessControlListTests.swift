@testable import FjordBroker
import FjordProto
import Testing

/// The decision rules, with no broker: matching, deny over allow, prefixes, wildcards, hosts,
/// implied operations, and the validation of ACLs arriving in requests.
@Suite struct AccessControlListTests {
    let alice = Principal(name: "alice")
    let bob = Principal(name: "bob")

    func entry(
        _ principal: Principal, _ operation: AccessControlEntry.Operation, _ type: AccessControlEntry.ResourceType = .topic,
        _ name: String = "orders", pattern: AccessControlEntry.PatternType = .literal, _ permission: AccessControlEntry.Permission = .allow,
        host: String = "*"
    ) -> AccessControlEntry {
        AccessControlEntry(
            principal: principal, host: host, resourceType: type, resourceName: name, patternType: pattern, operation: operation,
            permission: permission)
    }

    @Test func nothingIsAllowedWithoutAnEntry() {
        let acl = AccessControlList()
        for operation in AccessControlEntry.Operation.allCases {
            #expect(!acl.allows(alice, host: "10.0.0.1", operation, .topic, "orders"))
        }
        #expect(!acl.allows(alice, host: "10.0.0.1", .create, .cluster, ""))
    }

    @Test func aLiteralAllowCoversItsTopicOperationAndPrincipalOnly() {
        let acl = AccessControlList([entry(alice, .write)])
        #expect(acl.allows(alice, host: "10.0.0.1", .write, .topic, "orders"))
        #expect(!acl.allows(alice, host: "10.0.0.1", .read, .topic, "orders"))
        #expect(!acl.allows(alice, host: "10.0.0.1", .write, .topic, "orders2"))
        #expect(!acl.allows(alice, host: "10.0.0.1", .write, .topic, "order"))
        #expect(!acl.allows(bob, host: "10.0.0.1", .write, .topic, "orders"))
        #expect(!acl.allows(alice, host: "10.0.0.1", .write, .group, "orders"))
    }

    @Test func denyWinsOverAllow() {
        let acl = AccessControlList([entry(alice, .all), entry(alice, .write, .topic, "orders", .deny)])
        #expect(!acl.allows(alice, host: "h", .write, .topic, "orders"))
        #expect(acl.allows(alice, host: "h", .read, .topic, "orders"))
        // A deny of `all` denies every operation, including implied ones.
        let all = AccessControlList([entry(alice, .read), entry(alice, .all, .topic, "orders", .deny)])
        #expect(!all.allows(alice, host: "h", .read, .topic, "orders"))
        #expect(!all.allows(alice, host: "h", .describe, .topic, "orders"))
    }

    @Test func prefixesAndTheLiteralWildcard() {
        let acl = AccessControlList([
            entry(alice, .read, .topic, "orders.", pattern: .prefixed),
            entry(alice, .read, .topic, "orders.secret", pattern: .prefixed, .deny),
            entry(bob, .describe, .topic, "*"),
        ])
        #expect(acl.allows(alice, host: "h", .read, .topic, "orders.eu"))
        #expect(acl.allows(alice, host: "h", .read, .topic, "orders."))
        #expect(!acl.allows(alice, host: "h", .read, .topic, "orders"))
        #expect(!acl.allows(alice, host: "h", .read, .topic, "orders.secret.q1"))
        #expect(acl.allows(bob, host: "h", .describe, .topic, "anything"))
        #expect(!acl.allows(bob, host: "h", .read, .topic, "anything"))
        // "*" is a wildcard only as a literal: a topic named "*x" is not matched by a prefix "*".
        #expect(!acl.allows(alice, host: "h", .read, .topic, "*"))
    }

    @Test func theWildcardPrincipalAndHosts() {
        let acl = AccessControlList([
            entry(Principal(name: "*"), .read),
            entry(alice, .write, host: "10.0.0.1"),
            entry(Principal(name: "*"), .read, .topic, "orders", .deny, host: "10.6.6.6"),
        ])
        #expect(acl.allows(alice, host: "10.0.0.2", .read, .topic, "orders"))
        #expect(acl.allows(bob, host: "10.0.0.2", .read, .topic, "orders"))
        #expect(!acl.allows(bob, host: "10.6.6.6", .read, .topic, "orders"))
        #expect(acl.allows(alice, host: "10.0.0.1", .write, .topic, "orders"))
        #expect(!acl.allows(alice, host: "10.0.0.2", .write, .topic, "orders"))
        // A wildcard of one principal type does not cover another.
        #expect(!acl.allows(Principal(type: "Group", name: "x"), host: "10.0.0.2", .read, .topic, "orders"))
    }

    @Test func impliedOperations() {
        for operation: AccessControlEntry.Operation in [.read, .write, .delete, .alter] {
            let acl = AccessControlList([entry(alice, operation)])
            #expect(acl.allows(alice, host: "h", .describe, .topic, "orders"), "\(operation) implies describe")
            #expect(!acl.allows(alice, host: "h", .describeConfigs, .topic, "orders"))
        }
        let configs = AccessControlList([entry(alice, .alterConfigs)])
        #expect(configs.allows(alice, host: "h", .describeConfigs, .topic, "orders"))
        #expect(!configs.allows(alice, host: "h", .describe, .topic, "orders"))
        // A deny of read does not deny describe (as in Kafka).
        let readDenied = AccessControlList([entry(alice, .describe), entry(alice, .read, .topic, "orders", .deny)])
        #expect(readDenied.allows(alice, host: "h", .describe, .topic, "orders"))
    }

    @Test func clusterEntriesIgnoreNames() {
        let acl = AccessControlList([entry(alice, .create, .cluster, "")])
        #expect(acl.allows(alice, host: "h", .create, .cluster, ""))
        #expect(!acl.allows(alice, host: "h", .alter, .cluster, ""))
        #expect(!acl.allows(alice, host: "h", .create, .topic, "orders"))
    }

    @Test func writeOnAnyTopic() {
        #expect(AccessControlList([entry(alice, .write, .topic, "a.", pattern: .prefixed)]).allowsAny(alice, host: "h", .write, .topic))
        #expect(!AccessControlList([entry(alice, .read)]).allowsAny(alice, host: "h", .write, .topic))
        #expect(!AccessControlList([entry(bob, .write)]).allowsAny(alice, host: "h", .write, .topic))
        // Denied exactly where allowed, or everywhere: nothing left.
        #expect(!AccessControlList([entry(alice, .write), entry(alice, .write, .topic, "orders", .deny)]).allowsAny(alice, host: "h", .write, .topic))
        #expect(!AccessControlList([entry(alice, .write), entry(alice, .all, .topic, "*", .deny)]).allowsAny(alice, host: "h", .write, .topic))
        #expect(!AccessControlList([entry(alice, .write, .topic, "ord.x", pattern: .prefixed), entry(alice, .write, .topic, "ord", pattern: .prefixed, .deny)]).allowsAny(alice, host: "h", .write, .topic))
        // Denied on one topic, allowed on another.
        #expect(AccessControlList([entry(alice, .write), entry(alice, .write, .topic, "x"), entry(alice, .write, .topic, "orders", .deny)]).allowsAny(alice, host: "h", .write, .topic))
    }

    @Test func filtersSelectByEveryField() {
        let entries = [entry(alice, .write), entry(alice, .read, .topic, "orders", .deny), entry(bob, .read, .group, "billing")]
        let acl = AccessControlList(entries + [entries[0]])
        #expect(acl.entries.count == 3, "duplicates are kept once")
        #expect(acl.entries(matching: AccessControlFilter()).count == 3)
        #expect(acl.entries(matching: AccessControlFilter(principal: alice)) == Array(entries[0...1]))
        #expect(acl.entries(matching: AccessControlFilter(permission: .deny)) == [entries[1]])
        #expect(acl.entries(matching: AccessControlFilter(resourceType: .group, resourceName: "billing")) == [entries[2]])
        #expect(acl.entries(matching: AccessControlFilter(operation: .all)).isEmpty)
    }

    @Test func aclsFromRequestsAreValidated() throws {
        func wire(_ configure: (inout Fjord_V1_Acl) -> Void) -> Fjord_V1_Acl {
            var acl = Fjord_V1_Acl()
            acl.principal = "User:alice"
            acl.resourceType = .topic
            acl.resourceName = "orders"
            acl.patternType = .literal
            acl.operation = .write
            acl.permission = .allow
            configure(&acl)
            return acl
        }
        let valid = try AccessControlEntry(wire: wire { _ in })
        #expect(valid == entry(alice, .write))
        #expect(valid.host == "*")
        #expect(try AccessControlEntry(wire: valid.wireValue) == valid)
        let cluster = try AccessControlEntry(wire: wire { $0.resourceType = .cluster; $0.resourceName = ""; $0.operation = .create })
        #expect(cluster.resourceName == "" && cluster.resourceType == .cluster)

        let invalid: [(String, (inout Fjord_V1_Acl) -> Void)] = [
            ("no principal type", { $0.principal = "alice" }),
            ("empty principal name", { $0.principal = "User:" }),
            ("no resource type", { $0.resourceType = .any }),
            ("no operation", { $0.operation = .any }),
            ("no permission", { $0.permission = .any }),
            ("no pattern type", { $0.patternType = .any }),
            ("no topic name", { $0.resourceName = "" }),
            ("prefixed wildcard", { $0.resourceName = "*"; $0.patternType = .prefixed }),
            ("write on a group", { $0.resourceType = .group }),
            ("write on the cluster", { $0.resourceType = .cluster; $0.resourceName = "" }),
            ("a named cluster", { $0.resourceType = .cluster; $0.resourceName = "other"; $0.operation = .alter }),
            ("a long name", { $0.resourceName = String(repeating: "x", count: 250) }),
        ]
        for (what, change) in invalid {
            #expect(throws: BrokerError.self, "\(what)") { try AccessControlEntry(wire: wire(change)) }
            do { _ = try AccessControlEntry(wire: wire(change)) } catch { #expect(error.code == .invalidRequest, "\(what)") }
        }
    }

    @Test func principalsParseAndPrint() throws {
        #expect(try Principal(parsing: "User:billing") == Principal(name: "billing"))
        #expect(try Principal(parsing: "User:CN=a,O=b").name == "CN=a,O=b")
        #expect(Principal.anonymous.description == "User:ANONYMOUS")
        for bad in ["", "User", ":x", "User:"] {
            #expect(throws: BrokerError.self) { try Principal(parsing: bad) }
        }
    }
}
