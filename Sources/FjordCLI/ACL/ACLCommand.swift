import ArgumentParser
import FjordClient
import Foundation

/// `fjord acl`: add, list and remove access control list entries, in the manner of `rpk acl`.
struct ACLCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acl",
        abstract: "Add, list and remove ACL entries (enforced when the broker runs with authorizer.enable=true).",
        discussion: """
            An entry allows (or denies) a principal an operation on topics, groups or the cluster.
            A matching deny wins over any allow; with the authorizer on, what no entry allows is denied.
            Operations: all, read, write, create, delete, alter, describe, describe-configs,
            alter-configs, cluster-action. Principals are User:<name> (User:* for everyone); the
            broker takes the name from the client certificate (see `fjord acl whoami`).

            Examples:
              fjord acl add --allow User:billing --operation write --topic orders
              fjord acl add --allow User:analytics --operation read --topic-prefix orders.
              fjord acl add --deny User:intern --operation all --topic payroll
              fjord acl add --allow User:ops --operation alter --operation describe --cluster
              fjord acl list --principal User:billing
              fjord acl remove --allow User:billing --operation write --topic orders
              fjord acl whoami
            """,
        subcommands: [Add.self, List.self, Remove.self, WhoAmI.self]
    )

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add entries: every principal x operation x resource x host given.",
            discussion: "Example: fjord acl add --allow User:billing --operation write --topic orders")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var selection: ACLSelection

        func run() async throws {
            let bindings = try selection.bindings()
            try await withClient(connection) { client in
                let created = try await client.admin.createACLs(bindings)
                for binding in bindings { print("added: \(binding)") }
                if created < bindings.count { print("(\(bindings.count - created) were present already)") }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List entries; each flag narrows the list (repeat a flag for either value).",
            discussion: "Example: fjord acl list --topic orders")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var selection: ACLSelection

        func run() async throws {
            let filters = try selection.filters()
            try await withClient(connection) { client in
                var seen = Set<ACLBinding>()
                var rows: [ACLBinding] = []
                for filter in filters {
                    for binding in try await client.admin.listACLs(filter) where seen.insert(binding).inserted {
                        rows.append(binding)
                    }
                }
                printTable(rows)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove every entry the flags select (at least one flag).",
            discussion: "Example: fjord acl remove --allow User:billing --operation write --topic orders")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var selection: ACLSelection

        func run() async throws {
            guard !selection.isEmpty else {
                throw ValidationError("say which entries to remove (--principal, --allow, --deny, --topic, ...)")
            }
            let filters = try selection.filters()
            try await withClient(connection) { client in
                let deleted = try await client.admin.deleteACLs(filters)
                for binding in deleted { print("removed: \(binding)") }
                if deleted.isEmpty { print("no entry matched") }
            }
        }
    }

    struct WhoAmI: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "whoami", abstract: "Print the principal the broker takes this client to be.",
            discussion: "Example: fjord acl whoami --cert billing.pem --key billing-key.pem")
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await withClient(connection) { client in print(try await client.principal()) }
        }
    }
}

private func printTable(_ rows: [ACLBinding]) {
    let header = ["PRINCIPAL", "HOST", "RESOURCE", "NAME", "PATTERN", "OPERATION", "PERMISSION"]
    let cells = rows.map { row in
        [
            row.principal, row.host, row.resourceType.rawValue, row.resourceType == .cluster ? "-" : row.resourceName,
            row.patternType.rawValue, row.operation.rawValue, row.permission.rawValue,
        ]
    }
    let widths = header.indices.map { column in ([header] + cells).map { $0[column].count }.max() ?? 0 }
    for line in [header] + cells {
        print(zip(line, widths).map { $0.padding($1) }.joined(separator: "  ").trimmingTrailingSpaces())
    }
}

extension String {
    fileprivate func trimmingTrailingSpaces() -> String {
        var text = self
        while text.last == " " { text.removeLast() }
        return text
    }
}

/// The flags that name ACL entries, shared by `add`, `list` and `remove`.
struct ACLSelection: ParsableArguments {
    @Option(name: .customLong("allow"), help: "Principal to allow (User:name); may repeat.")
    var allow: [String] = []
    @Option(name: .customLong("deny"), help: "Principal to deny (User:name); may repeat.")
    var deny: [String] = []
    @Option(name: .customLong("principal"), help: "list/remove: entries of this principal, allow or deny; may repeat.")
    var principals: [String] = []
    @Option(name: .customLong("operation"), help: "Operation; may repeat.")
    var operations: [String] = []
    @Option(name: .customLong("topic"), help: "Topic name (* for every topic); may repeat.")
    var topics: [String] = []
    @Option(name: .customLong("topic-prefix"), help: "Topics whose names start with this; may repeat.")
    var topicPrefixes: [String] = []
    @Option(name: .customLong("group"), help: "Consumer group name (* for every group); may repeat.")
    var groups: [String] = []
    @Option(name: .customLong("group-prefix"), help: "Groups whose names start with this; may repeat.")
    var groupPrefixes: [String] = []
    @Flag(name: .customLong("cluster"), help: "The cluster (creating topics, managing ACLs).")
    var cluster = false
    @Option(name: .customLong("host"), help: "Client IP address the entry applies to (default: any); may repeat.")
    var hosts: [String] = []

    var isEmpty: Bool {
        allow.isEmpty && deny.isEmpty && principals.isEmpty && operations.isEmpty && resources.isEmpty && hosts.isEmpty
    }

    private var resources: [(ACLBinding.ResourceType, String, ACLBinding.PatternType)] {
        topics.map { (.topic, $0, .literal) } + topicPrefixes.map { (.topic, $0, .prefixed) }
            + groups.map { (.group, $0, .literal) } + groupPrefixes.map { (.group, $0, .prefixed) }
            + (cluster ? [(.cluster, "", .literal)] : [])
    }

    private func parsedOperations() throws -> [ACLBinding.Operation] {
        try operations.map { text in
            let normalized = text.lowercased().replacingOccurrences(of: "_", with: "-")
            guard let operation = ACLBinding.Operation(rawValue: normalized) else {
                throw ValidationError(
                    "unknown operation \"\(text)\"; one of \(ACLBinding.Operation.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return operation
        }
    }

    private func checkPrincipal(_ text: String) throws -> String {
        guard let colon = text.firstIndex(of: ":"), colon != text.startIndex, text.index(after: colon) != text.endIndex else {
            throw ValidationError("a principal is Type:name, for example User:billing (not \"\(text)\")")
        }
        return text
    }

    /// The entries `add` creates: every principal x operation x resource x host.
    func bindings() throws -> [ACLBinding] {
        guard principals.isEmpty else { throw ValidationError("add takes --allow or --deny, not --principal") }
        let people = try allow.map { (try checkPrincipal($0), ACLBinding.Permission.allow) }
            + deny.map { (try checkPrincipal($0), ACLBinding.Permission.deny) }
        guard !people.isEmpty else { throw ValidationError("name a principal with --allow or --deny") }
        let operations = try parsedOperations()
        guard !operations.isEmpty else { throw ValidationError("name an --operation (all for every operation)") }
        guard !resources.isEmpty else {
            throw ValidationError("name a resource: --topic, --topic-prefix, --group, --group-prefix or --cluster")
        }
        var bindings: [ACLBinding] = []
        for (principal, permission) in people {
            for operation in operations {
                for (type, name, pattern) in resources {
                    for host in hosts.isEmpty ? ["*"] : hosts {
                        bindings.append(
                            ACLBinding(
                                principal: principal, host: host, resourceType: type, resourceName: name,
                                patternType: pattern, operation: operation, permission: permission))
                    }
                }
            }
        }
        return bindings
    }

    /// The filters `list` and `remove` use: every combination of the values given, a dimension
    /// not given matching anything.
    func filters() throws -> [ACLBindingFilter] {
        var people: [(String?, ACLBinding.Permission?)] =
            try allow.map { (try checkPrincipal($0), .allow) } + deny.map { (try checkPrincipal($0), .deny) }
            + principals.map { (try checkPrincipal($0), nil) }
        if people.isEmpty { people = [(nil, nil)] }
        let operations: [ACLBinding.Operation?] = try parsedOperations()
        let resources: [(ACLBinding.ResourceType, String, ACLBinding.PatternType)?] = self.resources
        var filters: [ACLBindingFilter] = []
        for (principal, permission) in people {
            for operation in operations.isEmpty ? [nil] : operations {
                for resource in resources.isEmpty ? [nil] : resources {
                    for host in hosts.isEmpty ? [nil] : hosts.map(Optional.some) {
                        filters.append(
                            ACLBindingFilter(
                                principal: principal, host: host, resourceType: resource?.0, resourceName: resource?.1,
                                patternType: resource?.2, operation: operation, permission: permission))
                    }
                }
            }
        }
        return filters
    }
}
