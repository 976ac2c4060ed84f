import FjordProto
public import FjordTLS

/// Turns a client certificate into the connection's ``Principal``: take one name from the
/// certificate (`tls.principal.source`), then rewrite it with the first matching rule of
/// `tls.principal.mapping.rules` (Kafka's `ssl.principal.mapping.rules` syntax), and prefix `User:`.
///
/// Rules, separated by commas, are tried in order:
/// - `RULE:pattern/replacement/` with an optional `L` or `U` after it (lower- or upper-case the
///   result): when the regular expression `pattern` matches the whole name, the principal is
///   `replacement` with `$1`, `$2`, ... standing for its groups (`\/` is a literal slash);
/// - `DEFAULT`: the name unchanged.
///
/// A name no rule matches has no principal: the connection is refused (`AUTHENTICATION_FAILED`).
/// Without a client certificate the principal is ``Principal/anonymous``.
///
/// ```swift
/// let mapper = try PrincipalMapper(source: .distinguishedName, rules: "RULE:^CN=([^,]+),O=Example$/$1/L,DEFAULT")
/// mapper.principal(for: identity)  // User:billing for CN=Billing,O=Example
/// ```
public struct PrincipalMapper: Sendable {
    /// Which name of the certificate the rules see.
    public enum Source: String, Sendable, Hashable, CaseIterable {
        /// The subject's common name (the default).
        case commonName = "cn"
        /// The subject's distinguished name, RFC 4514: `CN=billing,O=Example`.
        case distinguishedName = "dn"
        /// The first URI subject alternative name (a SPIFFE id such as `spiffe://example.org/billing`).
        case uri = "san.uri"
        /// The first DNS subject alternative name.
        case dns = "san.dns"
    }

    /// One rule of `tls.principal.mapping.rules`.
    struct Rule: Sendable {
        enum CaseChange: Sendable { case none, lower, upper }
        /// `nil` for `DEFAULT`.
        var pattern: String?
        var replacement: String
        var caseChange: CaseChange
    }

    /// The name the rules see.
    public let source: Source
    let rules: [Rule]

    /// A mapper; `rules` in Kafka's syntax (`DEFAULT` keeps the name as it is).
    ///
    /// - Throws: a message naming the rule that does not parse, or whose pattern is not a valid
    ///   regular expression.
    public init(source: Source = .commonName, rules: String = "DEFAULT") throws(BrokerConfiguration.Error) {
        self.source = source
        self.rules = try Self.parse(rules)
    }

    /// The principal of a connection that presented `identity` (or none).
    public func principal(for identity: CertificateIdentity?) -> Result<Principal, BrokerError> {
        guard let identity else { return .success(.anonymous) }
        let name: String?
        switch source {
        case .commonName: name = identity.commonName
        case .distinguishedName: name = identity.distinguishedName
        case .uri: name = identity.uris.first
        case .dns: name = identity.dnsNames.first
        }
        guard let name, !name.isEmpty else {
            return .failure(
                BrokerError(
                    .authenticationFailed,
                    "the client certificate (\(identity.distinguishedName)) has no \(source.what), which tls.principal.source=\(source.rawValue) takes the principal from"))
        }
        guard let mapped = map(name) else {
            return .failure(
                BrokerError(
                    .authenticationFailed,
                    "no tls.principal.mapping.rules rule matches \"\(name)\" (the client certificate's \(source.what)); the connection has no principal"))
        }
        return .success(Principal(name: mapped))
    }

    /// `name` rewritten by the first matching rule, or `nil` when none matches.
    func map(_ name: String) -> String? {
        for rule in rules {
            guard let pattern = rule.pattern else { return name }
            // Patterns were compiled once when parsed; compiling again cannot fail.
            guard let regex = try? Regex(pattern), let match = try? regex.wholeMatch(in: name) else { continue }
            var result = ""
            var characters = rule.replacement[...]
            while let character = characters.popFirst() {
                if character == "$", let digit = characters.first, let group = digit.wholeNumberValue {
                    characters.removeFirst()
                    if group < match.output.count, let captured = match.output[group].substring { result += captured }
                } else if character == "\\", let next = characters.first {
                    characters.removeFirst()
                    result.append(next)
                } else {
                    result.append(character)
                }
            }
            switch rule.caseChange {
            case .none: return result
            case .lower: return result.lowercased()
            case .upper: return result.uppercased()
            }
        }
        return nil
    }

    static func parse(_ text: String) throws(BrokerConfiguration.Error) -> [Rule] {
        func fail(_ why: String) -> BrokerConfiguration.Error {
            BrokerConfiguration.Error(message: "tls.principal.mapping.rules: \(why)")
        }
        var rules: [Rule] = []
        var rest = Substring(text)
        /// Reads up to an unescaped `/`, keeping `\/` as `/` and any other escape as it is.
        func field() throws(BrokerConfiguration.Error) -> String {
            var value = ""
            while let character = rest.popFirst() {
                if character == "/" { return value }
                if character == "\\", rest.first == "/" {
                    rest.removeFirst()
                    value.append("/")
                } else {
                    value.append(character)
                }
            }
            throw fail("a RULE ends with pattern/replacement/ (a '/' is missing)")
        }
        while true {
            rest = rest.drop { $0 == " " || $0 == "," }
            if rest.isEmpty { break }
            if rest.hasPrefix("DEFAULT") {
                rest = rest.dropFirst("DEFAULT".count)
                rules.append(Rule(pattern: nil, replacement: "", caseChange: .none))
            } else if rest.hasPrefix("RULE:") {
                rest = rest.dropFirst("RULE:".count)
                let pattern = try field()
                let replacement = try field()
                var caseChange = Rule.CaseChange.none
                if rest.first == "L" || rest.first == "U" {
                    caseChange = rest.removeFirst() == "L" ? .lower : .upper
                }
                do { _ = try Regex(pattern) } catch {
                    throw fail("\"\(pattern)\" is not a valid regular expression: \(error)")
                }
                rules.append(Rule(pattern: pattern, replacement: replacement, caseChange: caseChange))
            } else {
                throw fail("expected RULE:pattern/replacement/[LU] or DEFAULT at \"\(rest.prefix(40))\"")
            }
            rest = rest.drop { $0 == " " }
            guard rest.isEmpty || rest.first == "," else {
                throw fail("rules are separated by commas; unexpected \"\(rest.prefix(40))\"")
            }
        }
        guard !rules.isEmpty else { throw fail("no rules; use DEFAULT to keep names as they are") }
        return rules
    }
}

extension PrincipalMapper.Source {
    /// The name, for messages.
    var what: String {
        switch self {
        case .commonName: "subject common name (CN)"
        case .distinguishedName: "subject distinguished name"
        case .uri: "URI subject alternative name"
        case .dns: "DNS subject alternative name"
        }
    }
}
