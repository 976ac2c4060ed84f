import NIOCore

/// Client addresses as ACLs compare them: one canonical text per IP address.
enum ClientHost {
    /// The canonical form of an IP address literal (`inet_ntop`'s: lowercase, zeros compressed),
    /// with an IPv4-mapped IPv6 address (`::ffff:10.0.0.7`, how a dual-stack listener sees IPv4
    /// clients) written as the IPv4 address; `nil` when `text` is not an IP address.
    static func canonical(_ text: String) -> String? {
        guard let address = try? SocketAddress(ipAddress: text, port: 0), let canonical = address.ipAddress else {
            return nil
        }
        return unmapped(canonical)
    }

    /// The host of a connection's peer address, as ``canonical(_:)`` writes it (empty if unknown).
    static func of(_ address: SocketAddress?) -> String {
        guard let text = address?.ipAddress else { return "" }
        return unmapped(text)
    }

    private static func unmapped(_ text: String) -> String {
        let prefix = "::ffff:"
        if text.lowercased().hasPrefix(prefix), text.contains("."), !text.dropFirst(prefix.count).contains(":") {
            return String(text.dropFirst(prefix.count))
        }
        return text
    }
}
