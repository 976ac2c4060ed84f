import Foundation
import Testing

/// `fjord acl` against a real `fjord serve` process with mutual TLS and the authorizer on: the
/// README's flow, from a CA to a client that may write to one topic and nothing else.
@Suite struct ACLCommandTests {
    @Test func theReadmeFlowLetsBillingWriteOrdersOnly() async throws {
        try await withTemporaryDirectory { directory in
            let pki = directory.path
            #expect(try runFjord(["certs", "ca", "--dir", pki]).status == 0)
            #expect(try runFjord(["certs", "server", "--dir", pki]).status == 0)
            for name in ["admin", "billing"] {
                #expect(try runFjord(["certs", "client", "--dir", pki, "--name", name]).status == 0)
            }
            let settings = [
                "--set", "tls.certificate=\(pki)/server.pem", "--set", "tls.key=\(pki)/server-key.pem",
                "--set", "tls.client.ca=\(pki)/ca.pem", "--set", "tls.client.auth=required",
                "--set", "authorizer.enable=true", "--set", "super.users=User:admin",
            ]
            try await withServeProcess(extra: settings) { broker in
                func fjord(_ arguments: [String], as name: String, input: String? = nil) throws -> ProcessResult {
                    try runFjord(
                        arguments + ["--broker", broker.address, "--ca", pki + "/ca.pem", "--cert", "\(pki)/\(name).pem",
                                     "--key", "\(pki)/\(name)-key.pem"], input: input)
                }
                #expect(try fjord(["acl", "whoami"], as: "billing").output == "User:billing\n")

                // Nothing allowed yet: billing cannot even see the topic.
                #expect(try fjord(["topics", "create", "orders", "--partitions", "2"], as: "admin").status == 0)
                let before = try fjord(["produce", "orders"], as: "billing", input: "early\n")
                #expect(before.status != 0)
                #expect(before.error.contains("TOPIC_AUTHORIZATION_FAILED"), "\(before.error)")
                #expect(before.error.contains("fjord acl whoami"), "the hint says what to do")

                let added = try fjord(["acl", "add", "--allow", "User:billing", "--operation", "write", "--topic", "orders"], as: "admin")
                #expect(added.status == 0, "\(added.error)")
                #expect(added.output.contains("added: allow User:billing write on topic orders"))
                // billing may not manage ACLs.
                let sneaky = try fjord(["acl", "add", "--allow", "User:billing", "--operation", "all", "--topic", "*"], as: "billing")
                #expect(sneaky.status != 0)
                #expect(sneaky.error.contains("CLUSTER_AUTHORIZATION_FAILED"), "\(sneaky.error)")

                let listed = try fjord(["acl", "list"], as: "admin")
                #expect(listed.status == 0)
                let rows = listed.output.split(separator: "\n")
                #expect(rows.count == 2, "\(listed.output)")
                #expect(rows.last?.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                    == ["User:billing", "*", "topic", "orders", "literal", "write", "allow"])

                let produced = try fjord(["produce", "orders", "--acks", "durable"], as: "billing", input: "paid\nshipped\n")
                #expect(produced.status == 0, "\(produced.error)")
                let read = try fjord(["consume", "orders", "--from-beginning", "--max-records", "2"], as: "billing")
                #expect(read.status != 0)
                #expect(read.error.contains("TOPIC_AUTHORIZATION_FAILED"), "\(read.error)")
                let other = try fjord(["topics", "create", "other"], as: "billing")
                #expect(other.error.contains("TOPIC_AUTHORIZATION_FAILED"), "\(other.error)")
                #expect(try fjord(["topics", "list"], as: "billing").output == "orders\n")

                let removed = try fjord(["acl", "remove", "--principal", "User:billing"], as: "admin")
                #expect(removed.output.contains("removed: allow User:billing write on topic orders"), "\(removed.output)")
                let late = try fjord(["produce", "orders"], as: "billing", input: "late\n")
                #expect(late.status != 0)
                #expect(late.error.contains("TOPIC_AUTHORIZATION_FAILED"), "\(late.error)")
                // The admin reads exactly what billing wrote while it was allowed.
                let all = try fjord(["consume", "orders", "--from-beginning", "--max-records", "2"], as: "admin")
                #expect(all.status == 0, "\(all.error)")
                #expect(Set(all.output.split(separator: "\n")) == ["paid", "shipped"])
            }
        }
    }

    @Test func addNeedsAPrincipalAnOperationAndAResource() throws {
        for arguments in [
            ["acl", "add", "--operation", "read", "--topic", "t"],
            ["acl", "add", "--allow", "User:a", "--topic", "t"],
            ["acl", "add", "--allow", "User:a", "--operation", "read"],
            ["acl", "add", "--allow", "a", "--operation", "read", "--topic", "t"],
            ["acl", "add", "--allow", "User:a", "--operation", "fly", "--topic", "t"],
            ["acl", "remove"],
        ] {
            let result = try runFjord(arguments + ["--broker", "127.0.0.1:1", "--plaintext"])
            #expect(result.status != 0, "\(arguments)")
            #expect(!result.error.contains("could not reach"), "\(arguments) is refused before connecting: \(result.error)")
        }
    }
}
