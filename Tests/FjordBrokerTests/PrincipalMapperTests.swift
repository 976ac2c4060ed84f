@testable import FjordBroker
import FjordProto
import FjordTLS
import Testing

/// Client certificate names to principals: the sources and Kafka's mapping-rule syntax.
@Suite struct PrincipalMapperTests {
    let identity = CertificateIdentity(
        commonName: "Billing", distinguishedName: "CN=Billing,OU=Payments,O=Example", uris: ["spiffe://example.org/ns/prod/billing"],
        dnsNames: ["billing.internal"])

    func principal(_ source: PrincipalMapper.Source = .commonName, _ rules: String = "DEFAULT", _ identity: CertificateIdentity? = nil)
        throws -> Result<Principal, BrokerError>
    {
        try PrincipalMapper(source: source, rules: rules).principal(for: identity ?? self.identity)
    }

    @Test func eachSourceByDefault() throws {
        #expect(try principal(.commonName).get() == Principal(name: "Billing"))
        #expect(try principal(.distinguishedName).get() == Principal(name: "CN=Billing,OU=Payments,O=Example"))
        #expect(try principal(.uri).get() == Principal(name: "spiffe://example.org/ns/prod/billing"))
        #expect(try principal(.dns).get() == Principal(name: "billing.internal"))
    }

    @Test func noCertificateIsAnonymous() throws {
        #expect(try PrincipalMapper().principal(for: nil).get() == .anonymous)
    }

    @Test func rulesRewriteWithGroupsAndCase() throws {
        #expect(try principal(.distinguishedName, "RULE:^CN=([^,]+),OU=([^,]+),O=Example$/$2.$1/L").get().name == "payments.billing")
        #expect(try principal(.distinguishedName, "RULE:^CN=([^,]+),.*$/$1/U").get().name == "BILLING")
        #expect(try principal(.uri, "RULE:^spiffe:\\/\\/example\\.org\\/ns\\/([^\\/]+)\\/(.+)$/$2@$1/").get().name == "billing@prod")
        // First matching rule wins; DEFAULT catches the rest.
        #expect(try principal(.commonName, "RULE:^Other$/x/,RULE:^(B.*)$/svc-$1/L,DEFAULT").get().name == "svc-billing")
        #expect(try principal(.commonName, "RULE:^Other$/x/, DEFAULT").get().name == "Billing")
        // Patterns match the whole name, not a part of it.
        #expect(throws: BrokerError.self) { try principal(.commonName, "RULE:ill/x/").get() }
    }

    @Test func noMatchingRuleOrMissingNameFailsAuthentication() throws {
        let unmatched = try principal(.commonName, "RULE:^svc-(.*)$/$1/")
        guard case .failure(let error) = unmatched else { Issue.record("expected a failure"); return }
        #expect(error.code == .authenticationFailed)
        #expect(error.message.contains("Billing"))
        let noURI = try principal(.uri, "DEFAULT", CertificateIdentity(commonName: "x", distinguishedName: "CN=x"))
        guard case .failure(let missing) = noURI else { Issue.record("expected a failure"); return }
        #expect(missing.code == .authenticationFailed)
        #expect(missing.message.contains("URI"))
    }

    @Test func malformedRulesAreRefusedAtStart() {
        for rules in ["", "RULE:abc", "RULE:a/b", "RULE:(/x/", "DEFAULTX", "RULE:a/b/Q", "SOMETHING"] {
            #expect(throws: BrokerConfiguration.Error.self, "\(rules)") { try PrincipalMapper(rules: rules) }
        }
        var configuration = BrokerConfiguration()
        #expect(throws: BrokerConfiguration.Error.self) {
            try configuration.apply(["tls.principal.mapping.rules": "RULE:(/x/"], source: "test")
        }
        #expect(throws: BrokerConfiguration.Error.self) { try configuration.apply(["tls.principal.source": "email"], source: "test") }
        #expect(throws: BrokerConfiguration.Error.self) { try configuration.apply(["super.users": "admin"], source: "test") }
    }

    @Test func settingsLoad() throws {
        var configuration = BrokerConfiguration()
        try configuration.apply(
            [
                "tls.principal.source": "san.uri", "tls.principal.mapping.rules": "RULE:^spiffe:\\/\\/[^\\/]+\\/(.*)$/$1/,DEFAULT",
                "authorizer.enable": "true", "super.users": "User:admin; User:CN=ops,O=Example",
            ], source: "test")
        #expect(configuration.principalSource == .uri)
        #expect(configuration.authorizerEnabled)
        #expect(configuration.superUsers == [Principal(name: "admin"), Principal(name: "CN=ops,O=Example")])
        #expect(try configuration.principalMapper().principal(for: identity).get().name == "ns/prod/billing")
    }
}
