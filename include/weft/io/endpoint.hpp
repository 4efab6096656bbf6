/// \file
/// `endpoint`: an IPv4 or IPv6 address and a port.
///
/// Parses "127.0.0.1:8080" and "[::1]:80" (numeric addresses only, no name
/// lookup) and prints the same forms. A plain value type; thread-compatible.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace weft::io {

class endpoint {
public:
    /// 0.0.0.0:0.
    endpoint() noexcept;
    /// Parses "a.b.c.d:port" or "[v6]:port"; throws std::invalid_argument.
    static endpoint parse(std::string_view text);
    /// 127.0.0.1:port (or [::1]:port with `v6`).
    static endpoint loopback(std::uint16_t port, bool v6 = false) noexcept;
    /// 0.0.0.0:port (or [::]:port with `v6`).
    static endpoint any(std::uint16_t port, bool v6 = false) noexcept;
    /// From a socket address of family AF_INET or AF_INET6.
    static endpoint from_sockaddr(const sockaddr* address, socklen_t length);

    [[nodiscard]] bool is_v6() const noexcept { return m_address.v6.sin6_family == AF_INET6; }
    [[nodiscard]] std::uint16_t port() const noexcept;
    [[nodiscard]] std::string to_string() const;

    [[nodiscard]] const sockaddr* data() const noexcept { return &m_address.base; }
    [[nodiscard]] socklen_t size() const noexcept {
        return is_v6() ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    }
    [[nodiscard]] int family() const noexcept { return m_address.base.sa_family; }

    friend bool operator==(const endpoint& a, const endpoint& b) noexcept;

private:
    union {
        sockaddr base;
        sockaddr_in v4;
        sockaddr_in6 v6;
    } m_address;
};

} // namespace weft::io
