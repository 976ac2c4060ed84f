import FjordProto

/// One access control list entry: `principal` connecting from `host` is allowed (or denied)
/// `operation` on the resources the pattern selects. Enforced when the broker runs with
/// `authorizer.enable=true` (see `docs/security.md`).
///
/// ```swift
/// try await client.admin.createACLs([
///     ACLBinding(principal: "User:billing", resourceType: .topic, resourceName: "orders", operation: .write),
/// ])
/// ```
public struct ACLBinding: Sendable, Hashable, CustomStringConvertible {
    /// What an entry protects.
    public enum ResourceType: String, Sendable, Hashable, CaseIterable {
        case topic, group, cluster
    }

    /// How the resource name is matched.
    public enum PatternType: String, Sendable, Hashable, CaseIterable {
        /// The name equals the entry's; `*` matches every resource of the type.
        case literal
        /// The name starts with the entry's.
        case prefixed
    }

    /// What the principal does. `read`, `write`, `delete` and `alter` imply `describe`;
    /// `alterConfigs` implies `describeConfigs`; `all` is every operation.
    public enum Operation: String, Sendable, Hashable, CaseIterable {
        case all, read, write, create, delete, alter, describe
        case describeConfigs = "describe-configs"
        case alterConfigs = "alter-configs"
        case clusterAction = "cluster-action"
    }

    /// Whether the entry allows or denies; a matching deny wins over any allow.
    public enum Permission: String, Sendable, Hashable, CaseIterable {
        case allow, deny
    }

    /// `User:<name>`, or `User:*` for every principal.
    public var principal: String
    /// A client IP address, or `*` for every host.
    public var host: String
    public var resourceType: ResourceType
    /// Topic or group name or prefix; empty for the cluster.
    public var resourceName: String
    public var patternType: PatternType
    public var operation: Operation
    public var permission: Permission

    /// Creates an entry (by default a literal allow from any host).
    public init(
        principal: String, host: String = "*", resourceType: ResourceType, resourceName: String = "",
        patternType: PatternType = .literal, operation: Operation, permission: Permission = .allow
    ) {
        self.principal = principal
        self.host = host
        self.resourceType = resourceType
        self.resourceName = resourceName
        self.patternType = patternType
        self.operation = operation
        self.permission = permission
    }

    public var description: String {
        let resource =
            switch (resourceType, patternType) {
            case (.cluster, _): "cluster"
            case (let type, .literal): "\(type.rawValue) \(resourceName)"
            case (let type, .prefixed): "\(type.rawValue)s prefixed \(resourceName)"
            }
        return "\(permission.rawValue) \(principal) \(operation.rawValue) on \(resource)\(host == "*" || host.isEmpty ? "" : " from \(host)")"
    }

    init(wire acl: Fjord_V1_Acl) {
        self.init(
            principal: acl.principal, host: acl.host.isEmpty ? "*" : acl.host,
            resourceType: ResourceType(wire: acl.resourceType) ?? .topic, resourceName: acl.resourceName,
            patternType: acl.patternType == .prefixed ? .prefixed : .literal,
            operation: Operation(wire: acl.operation) ?? .all, permission: acl.permission == .deny ? .deny : .allow)
    }

    var wireValue: Fjord_V1_Acl {
        var acl = Fjord_V1_Acl()
        acl.principal = principal
        acl.host = host
        acl.resourceType = resourceType.wireValue
        acl.resourceName = resourceName
        acl.patternType = patternType == .literal ? .literal : .prefixed
        acl.operation = operation.wireValue
        acl.permission = permission == .allow ? .allow : .deny
        return acl
    }
}

/// Selects ACL entries: each field left `nil` matches anything, the others must equal the entry's.
///
/// ```swift
/// let billing = try await client.admin.listACLs(ACLBindingFilter(principal: "User:billing"))
/// ```
public struct ACLBindingFilter: Sendable, Hashable {
    public var principal: String?
    public var host: String?
    public var resourceType: ACLBinding.ResourceType?
    public var resourceName: String?
    public var patternType: ACLBinding.PatternType?
    public var operation: ACLBinding.Operation?
    public var permission: ACLBinding.Permission?

    /// A filter; with no arguments it matches every entry.
    public init(
        principal: String? = nil, host: String? = nil, resourceType: ACLBinding.ResourceType? = nil,
        resourceName: String? = nil, patternType: ACLBinding.PatternType? = nil, operation: ACLBinding.Operation? = nil,
        permission: ACLBinding.Permission? = nil
    ) {
        self.principal = principal
        self.host = host
        self.resourceType = resourceType
        self.resourceName = resourceName
        self.patternType = patternType
        self.operation = operation
        self.permission = permission
    }

    /// A filter selecting exactly `binding`.
    public init(exactly binding: ACLBinding) {
        self.init(
            principal: binding.principal, host: binding.host, resourceType: binding.resourceType,
            resourceName: binding.resourceName, patternType: binding.patternType, operation: binding.operation,
            permission: binding.permission)
    }

    var wireValue: Fjord_V1_AclFilter {
        var filter = Fjord_V1_AclFilter()
        filter.principal = principal ?? ""
        filter.host = host ?? ""
        filter.resourceType = resourceType?.wireValue ?? .any
        // A cluster entry's name is stored empty; the filter matches it that way.
        filter.resourceName = resourceType == .cluster ? "" : resourceName ?? ""
        filter.patternType = patternType.map { $0 == .literal ? .literal : .prefixed } ?? .any
        filter.operation = operation?.wireValue ?? .any
        filter.permission = permission.map { $0 == .allow ? .allow : .deny } ?? .any
        return filter
    }
}

extension ACLBinding.ResourceType {
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

extension ACLBinding.Operation {
    init?(wire: Fjord_V1_AclOperation) {
        guard let match = Self.allCases.first(where: { $0.wireValue == wire }) else { return nil }
        self = match
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
