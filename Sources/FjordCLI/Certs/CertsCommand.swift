import ArgumentParser
import FjordTLS
import Foundation

/// `fjord certs`: a development CA and the certificates it issues.
struct CertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Make a development CA, server and client certificates (PEM, EC P-256).",
        discussion: """
            For development and tests; production brokers use certificates from your own PKI.
            Files land in --dir: ca.pem and ca-key.pem, NAME.pem and NAME-key.pem (keys mode 0600).

            Examples:
              fjord certs ca --dir ./certs
              fjord certs server --dir ./certs --dns broker-1.internal --ip 10.0.0.5
              fjord certs client --dir ./certs --name billing-service
              fjord serve --set tls.certificate=certs/server.pem --set tls.key=certs/server-key.pem \\
                --set tls.client.ca=certs/ca.pem --set tls.client.auth=required
              fjord topics list --ca certs/ca.pem --cert certs/billing-service.pem --key certs/billing-service-key.pem
            """,
        subcommands: [CA.self, Server.self, Client.self]
    )

    struct CA: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a CA (ca.pem, ca-key.pem); keeps an existing one unless --force.",
            discussion: "Example: fjord certs ca --dir ./certs")
        @Option(help: "Directory for the files.") var dir = "certs"
        @Flag(help: "Replace an existing CA.") var force = false

        func run() throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            if !force && FileManager.default.fileExists(atPath: dir + "/ca.pem") {
                print("\(dir)/ca.pem exists; keeping it (--force replaces it)")
                return
            }
            try CertificateAuthority.generate().write(to: dir)
            print("wrote \(dir)/ca.pem and \(dir)/ca-key.pem")
        }
    }

    struct Server: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a server certificate from the CA in --dir.",
            discussion: "Example: fjord certs server --dir ./certs --dns broker-1.internal --ip 10.0.0.5")
        @Option(help: "Directory holding ca.pem and ca-key.pem; the files are written there.") var dir = "certs"
        @Option(help: "File name stem.") var name = "server"
        @Option(help: "A DNS name the certificate is valid for; may repeat (localhost is always included).") var dns: [String] = []
        @Option(help: "An IP address the certificate is valid for; may repeat (127.0.0.1 and ::1 are always included).")
        var ip: [String] = []

        func run() throws {
            let ca = try loadCA(dir)
            let certificate = try ca.issueServerCertificate(
                commonName: dns.first ?? "localhost", dnsNames: ["localhost"] + dns, ipAddresses: ["127.0.0.1", "::1"] + ip)
            try certificate.write(to: dir, name: name)
            print("wrote \(dir)/\(name).pem and \(dir)/\(name)-key.pem")
        }
    }

    struct Client: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a client certificate (mutual TLS) from the CA in --dir.",
            discussion: "Example: fjord certs client --dir ./certs --name billing-service")
        @Option(help: "Directory holding ca.pem and ca-key.pem; the files are written there.") var dir = "certs"
        @Option(help: "Client name: the certificate's common name and the file name stem.") var name = "client"
        @Option(help: "A URI subject alternative name, such as a SPIFFE id (spiffe://example.org/billing); may repeat.")
        var uri: [String] = []

        func run() throws {
            let certificate = try loadCA(dir).issueClientCertificate(commonName: name, uris: uri)
            try certificate.write(to: dir, name: name)
            print("wrote \(dir)/\(name).pem and \(dir)/\(name)-key.pem")
        }
    }
}

private func loadCA(_ directory: String) throws -> CertificateAuthority {
    do {
        return try CertificateAuthority(certificatePath: directory + "/ca.pem", privateKeyPath: directory + "/ca-key.pem")
    } catch {
        FileHandle.standardError.write(
            Data("fjord: \(error)\nhint: create a CA first with `fjord certs ca --dir \(directory)`\n".utf8))
        throw ExitCode(1)
    }
}
