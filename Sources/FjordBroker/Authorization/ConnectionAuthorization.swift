/// A connection's cache of authorization decisions, so the data path pays a dictionary lookup per
/// request, not an ACL scan. Lives on the connection's event loop.
///
/// The cache is dropped whenever the ``Authorizer``'s version moves (an ACL was added or removed),
/// so a change applies from the next request of every open connection.
struct ConnectionAuthorization {
    /// Decisions remembered at once, and the bytes of their resource names; past either, the
    /// cache starts over. A client naming endless distinct resources costs checks, not memory.
    static let maxCachedDecisions = 1024
    static let maxCachedNameBytes = 32 << 10

    private struct Key: Hashable {
        var operation: AccessControlEntry.Operation
        var type: AccessControlEntry.ResourceType
        var name: String
    }

    /// Who the connection is.
    let scope: AuthorizationScope
    private var version: UInt64 = .max
    private var decisions: [Key: Bool] = [:]
    private var cachedNameBytes = 0

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
            forget()
            version = current
        }
        let key = Key(operation: operation, type: type, name: name)
        let allowed: Bool
        if let cached = decisions[key] {
            allowed = cached
        } else {
            allowed = scope.allows(operation, type, name)
            // Names longer than any resource's (249 bytes) are not worth a place.
            if name.utf8.count <= DenialAudit.maxNameBytes {
                if decisions.count >= Self.maxCachedDecisions || cachedNameBytes + name.utf8.count > Self.maxCachedNameBytes {
                    forget()
                }
                decisions[key] = allowed
                cachedNameBytes += name.utf8.count
            }
        }
        if !allowed { throw scope.denied(operation, type, name) }
    }

    private mutating func forget() {
        decisions.removeAll(keepingCapacity: decisions.count <= 64)
        cachedNameBytes = 0
    }

    /// Decisions held now (tests).
    var cachedDecisions: Int { decisions.count }
}
