/// A connection's cache of authorization decisions, so the data path pays a dictionary lookup per
/// request, not an ACL scan. Lives on the connection's event loop.
///
/// The cache is dropped whenever the ``Authorizer``'s version moves (an ACL was added or removed),
/// so a change applies from the next request of every open connection.
struct ConnectionAuthorization {
    /// Decisions remembered at once; past it the cache starts over.
    static let maxCachedDecisions = 4096

    private struct Key: Hashable {
        var operation: AccessControlEntry.Operation
        var type: AccessControlEntry.ResourceType
        var name: String
    }

    /// Who the connection is.
    let scope: AuthorizationScope
    private var version: UInt64 = .max
    private var decisions: [Key: Bool] = [:]

    init(scope: AuthorizationScope) {
        self.scope = scope
    }

    /// Throws the `*_AUTHORIZATION_FAILED` error for `operation` on the resource unless allowed.
    mutating func require(
        _ operation: AccessControlEntry.Operation, _ type: AccessControlEntry.ResourceType, _ name: String = ""
    ) throws(BrokerError) {
        guard scope.authorizer.isEnabled else { return }
        let current = scope.authorizer.version
        if current != version {
            decisions.removeAll(keepingCapacity: true)
            version = current
        }
        let key = Key(operation: operation, type: type, name: name)
        let allowed: Bool
        if let cached = decisions[key] {
            allowed = cached
        } else {
            allowed = scope.allows(operation, type, name)
            if decisions.count >= Self.maxCachedDecisions { decisions.removeAll(keepingCapacity: true) }
            decisions[key] = allowed
        }
        if !allowed { throw scope.denied(operation, type, name) }
    }
}
