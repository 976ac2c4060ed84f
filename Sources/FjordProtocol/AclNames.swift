public import FjordProto

extension Fjord_V1_AclOperation {
    /// Every operation an ACL may name, by the name tools and logs use (`describe-configs`).
    static let names: [(Fjord_V1_AclOperation, String)] = [
        (.all, "all"), (.read, "read"), (.write, "write"), (.create, "create"), (.delete, "delete"), (.alter, "alter"),
        (.describe, "describe"), (.describeConfigs, "describe-configs"), (.alterConfigs, "alter-configs"),
        (.clusterAction, "cluster-action"),
    ]

    /// The operation's name (`read`, `describe-configs`, ...); `nil` for `ANY` and unknown values.
    public var aclName: String? { Self.names.first { $0.0 == self }?.1 }

    /// The operation named `aclName`, as ``aclName`` spells it.
    public init?(aclName: String) {
        guard let match = Self.names.first(where: { $0.1 == aclName }) else { return nil }
        self = match.0
    }
}

extension Fjord_V1_AclResourceType {
    /// Every resource type an ACL may name, by name.
    static let names: [(Fjord_V1_AclResourceType, String)] = [(.topic, "topic"), (.group, "group"), (.cluster, "cluster")]

    /// The type's name (`topic`, `group`, `cluster`); `nil` for `ANY` and unknown values.
    public var aclName: String? { Self.names.first { $0.0 == self }?.1 }

    /// The type named `aclName`.
    public init?(aclName: String) {
        guard let match = Self.names.first(where: { $0.1 == aclName }) else { return nil }
        self = match.0
    }
}
