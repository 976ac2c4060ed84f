/// Every ACL entry, indexed for decisions: a pure value with no I/O, so the rules are tested on
/// their own (`AccessControlListTests`) and a broker swaps in a new list when entries change.
///
/// The rules are Kafka's: an entry matches a request when it names the request's principal (or
/// `User:*`), its host (or `*`) and a pattern covering the resource (the literal name, the
/// literal `*`, or a prefix of the name). A matching `deny` for the operation (or `all`) denies;
/// otherwise a matching `allow` whose operation implies the requested one
/// (``AccessControlEntry/Operation/implies(_:)``) allows; otherwise the request is denied.
///
/// ```swift
/// let acl = AccessControlList([
///     AccessControlEntry(principal: Principal(name: "billing"), resourceType: .topic, resourceName: "orders",
///                        operation: .write, permission: .allow),
/// ])
/// acl.allows(Principal(name: "billing"), host: "10.0.0.7", .write, .topic, "orders")  // true
/// acl.allows(Principal(name: "billing"), host: "10.0.0.7", .read, .topic, "orders")   // false
/// ```
public struct AccessControlList: Sendable, Hashable {
    /// Every entry, in the order they were added.
    public private(set) var entries: [AccessControlEntry]
    /// Literal entries by resource type and name (`*` included).
    private var literal: [AccessControlEntry.ResourceType: [String: [AccessControlEntry]]] = [:]
    /// Prefixed entries by resource type.
    private var prefixed: [AccessControlEntry.ResourceType: [AccessControlEntry]] = [:]

    /// A list of `entries` (duplicates are kept once).
    public init(_ entries: [AccessControlEntry] = []) {
        var seen = Set<AccessControlEntry>()
        self.entries = entries.filter { seen.insert($0).inserted }
        for entry in self.entries {
            switch entry.patternType {
            case .literal: literal[entry.resourceType, default: [:]][entry.resourceName, default: []].append(entry)
            case .prefixed: prefixed[entry.resourceType, default: []].append(entry)
            }
        }
    }

    /// The entries whose resource pattern covers the resource `type` + `name`.
    private func covering(_ type: AccessControlEntry.ResourceType, _ name: String) -> [AccessControlEntry] {
        var found: [AccessControlEntry] = []
        if let byName = literal[type] {
            found += byName[name] ?? []
            if name != "*" { found += byName["*"] ?? [] }
        }
        for entry in prefixed[type] ?? [] where name.hasPrefix(entry.resourceName) { found.append(entry) }
        return found
    }

    /// Whether `principal` connecting from `host` may perform `operation` on the resource.
    public func allows(
        _ principal: Principal, host: String, _ operation: AccessControlEntry.Operation,
        _ type: AccessControlEntry.ResourceType, _ name: String
    ) -> Bool {
        let matching = covering(type, type == .cluster ? "" : name).filter { $0.applies(to: principal, host: host) }
        if matching.contains(where: { $0.permission == .deny && ($0.operation == .all || $0.operation == operation) }) {
            return false
        }
        return matching.contains { $0.permission == .allow && $0.operation.implies(operation) }
    }

    /// Whether some entry allows `principal` from `host` `operation` on at least one resource of
    /// `type` and is not itself wholly overridden by a deny (Kafka's rule for a producer id: write
    /// on any topic).
    public func allowsAny(
        _ principal: Principal, host: String, _ operation: AccessControlEntry.Operation,
        _ type: AccessControlEntry.ResourceType
    ) -> Bool {
        let applicable = entries.filter { $0.resourceType == type && $0.applies(to: principal, host: host) }
        let denies = applicable.filter { $0.permission == .deny && ($0.operation == .all || $0.operation == operation) }
        return applicable.contains { allow in
            guard allow.permission == .allow, allow.operation.implies(operation) else { return false }
            // A deny on a pattern that covers every name the allow covers leaves it nothing.
            return !denies.contains { deny in
                switch deny.patternType {
                case .literal: deny.resourceName == "*" || (allow.patternType == .literal && deny.resourceName == allow.resourceName)
                case .prefixed: allow.resourceName.hasPrefix(deny.resourceName) && allow.resourceName != "*"
                }
            }
        }
    }

    /// The entries `filter` selects.
    public func entries(matching filter: AccessControlFilter) -> [AccessControlEntry] {
        entries.filter(filter.matches)
    }
}
