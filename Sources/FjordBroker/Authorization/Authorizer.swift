import FjordProto
import Logging
import Synchronization

/// The broker's access control: the ACL entries from the ``MetadataStore``, cached in memory, and
/// the decisions made from them. One per broker, shared by every connection.
///
/// With `authorizer.enable` off every request is allowed, as before ACLs existed; entries can still
/// be managed, and take effect once it is turned on. With it on, `super.users` may do everything
/// and anyone else only what an ACL allows (deny by default).
///
/// Each change raises ``version``; connections cache decisions and drop them when the version
/// moves, so a revoked permission fails the very next request on connections already open.
public final class Authorizer: Sendable {
    /// Largest number of entries the broker keeps: each is checked on a connection's first request
    /// for a resource, so they must stay few enough to scan.
    public static let maxEntries = 100_000

    /// Whether decisions are enforced (`authorizer.enable`).
    public let isEnabled: Bool
    /// Principals allowed everything (`super.users`).
    public let superUsers: Set<Principal>
    private let store: any MetadataStore
    private let state: Mutex<(version: UInt64, list: AccessControlList)>
    private let currentVersion = Atomic<UInt64>(0)

    /// An authorizer over `store`'s entries; call ``load()`` before the first decision.
    init(isEnabled: Bool, superUsers: Set<Principal>, store: any MetadataStore) {
        self.isEnabled = isEnabled
        self.superUsers = superUsers
        self.store = store
        self.state = Mutex((0, AccessControlList()))
    }

    /// Reads the entries from the store.
    func load() async throws(BrokerError) {
        let (version, entries) = try await store.accessControlEntries()
        install(AccessControlList(entries), version: version)
    }

    /// Installs `list` unless a newer one is in place already (two changes may finish out of order).
    /// A cluster store's watch calls this too.
    func install(_ list: AccessControlList, version: UInt64) {
        state.withLock { state in
            guard version >= state.version else { return }
            state = (version, list)
            // Raised under the lock, after the list: a reader that sees the new version sees the list.
            currentVersion.store(version, ordering: .releasing)
        }
    }

    /// Changes whenever the entries do.
    var version: UInt64 { currentVersion.load(ordering: .acquiring) }

    /// The entries in force.
    public var list: AccessControlList { state.withLock { $0.list } }

    // MARK: Decisions

    /// Whether `principal` from `host` may perform `operation` on the resource.
    public func allows(
        _ principal: Principal, host: String, _ operation: AccessControlEntry.Operation,
        _ type: AccessControlEntry.ResourceType, _ name: String
    ) -> Bool {
        guard isEnabled, !superUsers.contains(principal) else { return true }
        let list = state.withLock { $0.list }
        return list.allows(principal, host: host, operation, type, name)
    }

    /// Whether `principal` may perform `operation` on at least one resource of `type`.
    public func allowsAny(
        _ principal: Principal, host: String, _ operation: AccessControlEntry.Operation,
        _ type: AccessControlEntry.ResourceType
    ) -> Bool {
        guard isEnabled, !superUsers.contains(principal) else { return true }
        let list = state.withLock { $0.list }
        return list.allowsAny(principal, host: host, operation, type)
    }

    // MARK: Administration

    /// Adds `entries` (all or none); returns how many were not there already.
    func create(_ entries: [AccessControlEntry]) async throws(BrokerError) -> Int {
        let (created, version) = try await store.changeAccessControlEntries { current throws(BrokerError) -> Int in
            var present = Set(current)
            let new = entries.filter { present.insert($0).inserted }
            guard current.count + new.count <= Self.maxEntries else {
                throw BrokerError(
                    .invalidRequest,
                    "the broker keeps at most \(Self.maxEntries) ACL entries; \(current.count) exist and \(new.count) would be added")
            }
            current += new
            return new.count
        }
        try await reload(atLeast: version)
        return created
    }

    /// Deletes every entry any of `filters` selects and returns them.
    func delete(matching filters: [AccessControlFilter]) async throws(BrokerError) -> [AccessControlEntry] {
        let (deleted, version) = try await store.changeAccessControlEntries { current throws(BrokerError) -> [AccessControlEntry] in
            let deleted = current.filter { entry in filters.contains { $0.matches(entry) } }
            current.removeAll { entry in filters.contains { $0.matches(entry) } }
            return deleted
        }
        try await reload(atLeast: version)
        return deleted
    }

    private func reload(atLeast version: UInt64) async throws(BrokerError) {
        let (stored, entries) = try await store.accessControlEntries()
        install(AccessControlList(entries), version: max(stored, version))
    }
}

/// Who a connection is and where from, with the broker's ``Authorizer``: what a request handler
/// needs to check a request, on or off the event loop.
struct AuthorizationScope: Sendable {
    let authorizer: Authorizer
    let principal: Principal
    let host: String
    /// Denials already logged for this connection (each is logged once).
    let audit: DenialAudit

    /// Throws the `*_AUTHORIZATION_FAILED` error for `operation` on the resource unless allowed.
    func require(
        _ operation: AccessControlEntry.Operation, _ type: AccessControlEntry.ResourceType, _ name: String = ""
    ) throws(BrokerError) {
        guard authorizer.allows(principal, host: host, operation, type, name) else {
            throw denied(operation, type, name)
        }
    }

    /// Whether allowed, without recording a denial (filtering listings).
    func allows(_ operation: AccessControlEntry.Operation, _ type: AccessControlEntry.ResourceType, _ name: String = "") -> Bool {
        authorizer.allows(principal, host: host, operation, type, name)
    }

    /// Records a denial (log once per connection and resource, metric every time) and returns the
    /// error for the client.
    func denied(_ operation: AccessControlEntry.Operation, _ type: AccessControlEntry.ResourceType, _ name: String) -> BrokerError {
        audit.record(principal: principal, host: host, operation: operation, type: type, name: name)
        let code: Fjord_V1_ErrorCode
        let resource: String
        switch type {
        case .topic:
            code = .topicAuthorizationFailed
            resource = "topic \"\(name)\""
        case .group:
            code = .groupAuthorizationFailed
            resource = "group \"\(name)\""
        case .cluster:
            code = .clusterAuthorizationFailed
            resource = "the cluster"
        }
        return BrokerError(code, "\(principal) is not allowed to \(operation.rawValue) \(resource)")
    }
}

/// Logs each denied request once per connection and resource, and counts every one in
/// `fjord_authorization_denied_total{principal,operation}`.
final class DenialAudit: Sendable {
    /// Distinct denials remembered per connection; past it, denials are counted but not logged.
    static let maxLogged = 256

    private let logged = Mutex<Set<String>>([])
    private let logger: Logger
    private let metrics: BrokerMetrics

    init(logger: Logger, metrics: BrokerMetrics) {
        self.logger = logger
        self.metrics = metrics
    }

    func record(
        principal: Principal, host: String, operation: AccessControlEntry.Operation, type: AccessControlEntry.ResourceType,
        name: String
    ) {
        metrics.authorizationDenied(principal: principal.description, operation: operation.rawValue)
        let key = "\(operation.rawValue) \(type.rawValue) \(name)"
        let first = logged.withLock { logged in
            guard logged.count < Self.maxLogged else { return false }
            return logged.insert(key).inserted
        }
        guard first else { return }
        logger.warning(
            "request denied",
            metadata: [
                "principal": "\(principal)", "host": "\(host)", "operation": "\(operation.rawValue)",
                "resource.type": "\(type.rawValue)", "resource.name": "\(name)",
            ])
    }
}
