import FjordProto

/// Who a connection is, as ACLs name it: `User:billing`, `User:ANONYMOUS`, or `User:*` (in an
/// ACL, every principal).
///
/// ```swift
/// let principal = try Principal(parsing: "User:billing")
/// print(principal)  // User:billing
/// ```
public struct Principal: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The principal's type; `User` for every principal Fjord makes today.
    public var type: String
    /// The name within the type.
    public var name: String

    /// Creates a principal.
    public init(type: String = "User", name: String) {
        self.type = type
        self.name = name
    }

    /// Parses `Type:name`; both parts must be non-empty.
    public init(parsing text: String) throws(BrokerError) {
        guard let colon = text.firstIndex(of: ":"), colon != text.startIndex, text.index(after: colon) != text.endIndex
        else {
            throw BrokerError(.invalidRequest, "principal \"\(text)\" is not of the form Type:name (for example User:billing)")
        }
        self.init(type: String(text[..<colon]), name: String(text[text.index(after: colon)...]))
    }

    /// The principal of a connection without a client certificate.
    public static let anonymous = Principal(name: "ANONYMOUS")

    /// In an ACL: every principal of the type.
    public var isWildcard: Bool { name == "*" }

    public var description: String { "\(type):\(name)" }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(parsing: text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// One access control list entry, in the manner of Kafka's: `principal` from `host` is allowed (or
/// denied) `operation` on the resources `resourceType` + `resourceName` + `patternType` select.
///
/// ```swift
/// let entry = AccessControlEntry(
///     principal: Principal(name: "billing"), resourceType: .topic, resourceName: "orders",
///     operation: .write, permission: .allow)
/// ```
public struct AccessControlEntry: Sendable, Hashable, Codable, CustomStringConvertible {
    /// What an entry protects.
    public enum ResourceType: String, Sendable, Hashable, Codable, CaseIterable {
        case topic, group, cluster
    }

    /// How the resource name is matched.
    public enum PatternType: String, Sendable, Hashable, Codable, CaseIterable {
        /// The name equals the entry's; the name `*` matches every resource of the type.
        case literal
        /// The name starts with the entry's.
        case prefixed
    }

    /// What the principal does.
    public enum Operation: String, Sendable, Hashable, Codable, CaseIterable {
        case all, read, write, create, delete, alter, describe
        case describeConfigs = "describe-configs"
        case alterConfigs = "alter-configs"
        case clusterAction = "cluster-action"

        /// Whether an allow entry for `self` allows `operation`: `all` allows everything, and as in
        /// Kafka `read`, `write`, `delete` and `alter` imply `describe`, `alter-configs` implies
        /// `describe-configs`.
        public func implies(_ operation: Operation) -> Bool {
            switch (self, operation) {
            case (.all, _): true
            case (_, _) where self == operation: true
            case (.read, .describe), (.write, .describe), (.delete, .describe), (.alter, .describe): true
            case (.alterConfigs, .describeConfigs): true
            default: false
            }
        }

        /// The operations an entry on `type` may name (`all` on every type).
        public static func valid(on type: ResourceType) -> Set<Operation> {
            switch type {
            case .topic: [.all, .read, .write, .create, .delete, .alter, .describe, .describeConfigs, .alterConfigs]
            case .group: [.all, .read, .describe, .delete]
            case .cluster: [.all, .create, .alter, .describe, .describeConfigs, .alterConfigs, .clusterAction]
            }
        }
    }

    /// Whether a matching entry allows or denies; a matching deny wins over any allow.
    public enum Permission: String, Sendable, Hashable, Codable, CaseIterable {
        case allow, deny
    }

    /// The principal, or `User:*` for every principal.
    public var principal: Principal
    /// A client IP address, or `*` for every host.
    public var host: String
    public var resourceType: ResourceType
    /// The topic or group name or prefix (`*` with ``PatternType/literal``: all); empty for the cluster.
    public var resourceName: String
    public var patternType: PatternType
    public var operation: Operation
    public var permission: Permission

    /// Creates an entry.
    public init(
        principal: Principal, host: String = "*", resourceType: ResourceType, resourceName: String = "",
        patternType: PatternType = .literal, operation: Operation, permission: Permission
    ) {
        self.principal = principal
        self.host = host.isEmpty ? "*" : host
        self.resourceType = resourceType
        self.resourceName = resourceType == .cluster ? "" : resourceName
        self.patternType = resourceType == .cluster ? .literal : patternType
        self.operation = operation
        self.permission = permission
    }

    /// Whether the entry speaks of `principal` connecting from `host`.
    func applies(to principal: Principal, host: String) -> Bool {
        (self.principal == principal || (self.principal.isWildcard && self.principal.type == principal.type))
            && (self.host == "*" || self.host == host)
    }

    /// Whether the entry's resource pattern covers the resource named `name`.
    func covers(_ name: String) -> Bool {
        switch patternType {
        case .literal: resourceName == name || resourceName == "*" || resourceType == .cluster
        case .prefixed: name.hasPrefix(resourceName)
        }
    }

    /// The resource as people read it: `topic orders`, `topics prefixed orders.`, `the cluster`.
    var resourceDescription: String {
        switch (resourceType, patternType) {
        case (.cluster, _): "the cluster"
        case (let type, .literal) where resourceName == "*": "every \(type.rawValue)"
        case (let type, .literal): "\(type.rawValue) \(resourceName)"
        case (let type, .prefixed): "\(type.rawValue)s prefixed \(resourceName)"
        }
    }

    public var description: String {
        "\(permission.rawValue) \(principal) \(operation.rawValue) on \(resourceDescription)\(host == "*" ? "" : " from \(host)")"
    }
}

/// Selects entries: each field left `nil` matches anything, the others must equal the entry's.
public struct AccessControlFilter: Sendable, Hashable {
    public var principal: Principal?
    public var host: String?
    public var resourceType: AccessControlEntry.ResourceType?
    public var resourceName: String?
    public var patternType: AccessControlEntry.PatternType?
    public var operation: AccessControlEntry.Operation?
    public var permission: AccessControlEntry.Permission?

    /// A filter; with no arguments it matches every entry.
    public init(
        principal: Principal? = nil, host: String? = nil, resourceType: AccessControlEntry.ResourceType? = nil,
        resourceName: String? = nil, patternType: AccessControlEntry.PatternType? = nil,
        operation: AccessControlEntry.Operation? = nil, permission: AccessControlEntry.Permission? = nil
    ) {
        self.principal = principal
        self.host = host
        self.resourceType = resourceType
        self.resourceName = resourceName
        self.patternType = patternType
        self.operation = operation
        self.permission = permission
    }

    /// Whether `entry` is selected.
    public func matches(_ entry: AccessControlEntry) -> Bool {
        (principal.map { $0 == entry.principal } ?? true)
            && (host.map { $0 == entry.host } ?? true)
            && (resourceType.map { $0 == entry.resourceType } ?? true)
            && (resourceName.map { $0 == entry.resourceName } ?? true)
            && (patternType.map { $0 == entry.patternType } ?? true)
            && (operation.map { $0 == entry.operation } ?? true)
            && (permission.map { $0 == entry.permission } ?? true)
    }
}

// MARK: Wire conversions

extension AccessControlEntry {
    /// Validates an ACL from a request.
    init(wire acl: Fjord_V1_Acl) throws(BrokerError) {
        func invalid(_ why: String) -> BrokerError { BrokerError(.invalidRequest, "invalid ACL: \(why)") }
        let principal = try Principal(parsing: acl.principal)
        guard let resourceType = ResourceType(wire: acl.resourceType) else {
            throw invalid("resource_type must be TOPIC, GROUP or CLUSTER")
        }
        guard let operation = Operation(wire: acl.operation) else { throw invalid("operation must be set (ALL for every operation)") }
        guard let permission = Permission(wire: acl.permission) else { throw invalid("permission must be ALLOW or DENY") }
        let patternType: PatternType
        switch acl.patternType {
        case .literal: patternType = .literal
        case .prefixed: patternType = .prefixed
        case .any where resourceType == .cluster: patternType = .literal
        default: throw invalid("pattern_type must be LITERAL or PREFIXED")
        }
        if resourceType == .cluster {
            guard acl.resourceName.isEmpty || acl.resourceName == "*" || acl.resourceName == "cluster" else {
                throw invalid("a CLUSTER ACL names no resource (got \"\(acl.resourceName)\")")
            }
        } else {
            guard !acl.resourceName.isEmpty else { throw invalid("a \(resourceType.rawValue) ACL needs a resource name (\"*\" for all)") }
            guard acl.resourceName.utf8.count <= 249 else { throw invalid("resource names are at most 249 bytes") }
            guard !(patternType == .prefixed && acl.resourceName == "*") else {
                throw invalid("\"*\" is a LITERAL wildcard; a PREFIXED name is matched as text")
            }
        }
        guard Operation.valid(on: resourceType).contains(operation) else {
            throw invalid(
                "\(operation.rawValue) does not apply to a \(resourceType.rawValue) (it takes \(Operation.valid(on: resourceType).map(\.rawValue).sorted().joined(separator: ", ")))")
        }
        guard principal.description.utf8.count <= 1024, acl.host.utf8.count <= 255 else {
            throw invalid("the principal is at most 1024 bytes and the host 255")
        }
        self.init(
            principal: principal, host: acl.host, resourceType: resourceType, resourceName: acl.resourceName,
            patternType: patternType, operation: operation, permission: permission)
    }

    /// The ACL as sent to clients.
    var wireValue: Fjord_V1_Acl {
        var acl = Fjord_V1_Acl()
        acl.principal = principal.description
        acl.host = host
        acl.resourceType = resourceType.wireValue
        acl.resourceName = resourceName
        acl.patternType = patternType == .literal ? .literal : .prefixed
        acl.operation = operation.wireValue
        acl.permission = permission == .allow ? .allow : .deny
        return acl
    }
}

extension AccessControlFilter {
    /// A filter from a request; zero values match anything.
    init(wire filter: Fjord_V1_AclFilter) throws(BrokerError) {
        self.init(
            principal: filter.principal.isEmpty ? nil : try Principal(parsing: filter.principal),
            host: filter.host.isEmpty ? nil : filter.host,
            resourceType: AccessControlEntry.ResourceType(wire: filter.resourceType),
            resourceName: filter.resourceName.isEmpty ? nil : filter.resourceName,
            patternType: filter.patternType == .literal ? .literal : filter.patternType == .prefixed ? .prefixed : nil,
            operation: AccessControlEntry.Operation(wire: filter.operation),
            permission: AccessControlEntry.Permission(wire: filter.permission))
    }
}

extension AccessControlEntry.ResourceType {
    init?(wire: Fjord_V1_AclResourceType) {
        switch wire {
        case .topic: self = .topic
        case .group: self = .group
        case .cluster: self = .cluster
        default: return nil
        }
    }

    var wireValue: Fjord_V1_AclResourceType {
        switch self {
        case .topic: .topic
        case .group: .group
        case .cluster: .cluster
        }
    }
}

extension AccessControlEntry.Permission {
    init?(wire: Fjord_V1_AclPermission) {
        switch wire {
        case .allow: self = .allow
        case .deny: self = .deny
        default: return nil
        }
    }
}

extension AccessControlEntry.Operation {
    init?(wire: Fjord_V1_AclOperation) {
        switch wire {
        case .all: self = .all
        case .read: self = .read
        case .write: self = .write
        case .create: self = .create
        case .delete: self = .delete
        case .alter: self = .alter
        case .describe: self = .describe
        case .describeConfigs: self = .describeConfigs
        case .alterConfigs: self = .alterConfigs
        case .clusterAction: self = .clusterAction
        default: return nil
        }
    }

    var wireValue: Fjord_V1_AclOperation {
        switch self {
        case .all: .all
        case .read: .read
        case .write: .write
        case .create: .create
        case .delete: .delete
        case .alter: .alter
        case .describe: .describe
        case .describeConfigs: .describeConfigs
        case .alterConfigs: .alterConfigs
        case .clusterAction: .clusterAction
        }
    }
}
