// Echo load generator shared by both servers: C connections on one thread
// (epoll), each keeps one message of S bytes in flight and sends the next as
// soon as the whole echo came back. Runs for D seconds after a warm-up and
// prints one JSON object: messages per second and round-trip percentiles.
//
//   echo_load HOST PORT CONNECTIONS MESSAGE_BYTES SECONDS
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct connection {
    int fd = -1;
    std::size_t sent = 0;
    std::size_t received = 0;
    clock_type::time_point started;
};

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "echo_load: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: echo_load HOST PORT CONNECTIONS MESSAGE_BYTES SECONDS\n");
        return 2;
    }
    const char* host = argv[1];
    const int port = std::atoi(argv[2]);
    const int count = std::atoi(argv[3]);
    const std::size_t size = static_cast<std::size_t>(std::atol(argv[4]));
    const double seconds = std::atof(argv[5]);

    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fail("bad address");
    }
    const int ep = epoll_create1(0);
    std::vector<connection> conns(static_cast<std::size_t>(count));
    std::vector<char> out(size, 'x');
    std::vector<char> in(size);
    for (std::size_t i = 0; i < conns.size(); ++i) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            fail("connect");
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns[i].fd = fd;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = i;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }

    std::vector<double> rtts;
    rtts.reserve(1 << 20);
    long messages = 0;
    const auto warmup_end = clock_type::now() + std::chrono::milliseconds(500);
    const auto end = warmup_end + std::chrono::duration_cast<clock_type::duration>(
                                      std::chrono::duration<double>(seconds));
    auto send_one = [&](connection& c) {
        c.started = clock_type::now();
        c.received = 0;
        std::size_t off = 0;
        while (off < size) { // blocking sockets: a message fits the socket buffer
            const ssize_t n = ::send(c.fd, out.data() + off, size - off, MSG_NOSIGNAL);
            if (n <= 0) {
                fail("send");
            }
            off += static_cast<std::size_t>(n);
        }
    };
    for (auto& c : conns) {
        send_one(c);
    }
    std::vector<epoll_event> events(256);
    for (;;) {
        const auto now = clock_type::now();
        if (now >= end) {
            break;
        }
        const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
        for (int i = 0; i < n; ++i) {
            connection& c = conns[events[static_cast<std::size_t>(i)].data.u64];
            const ssize_t got = ::recv(c.fd, in.data(), size - c.received, MSG_DONTWAIT);
            if (got == 0) {
                std::fprintf(stderr, "echo_load: server closed a connection\n");
                return 1;
            }
            if (got < 0) {
                if (errno == EAGAIN) {
                    continue;
                }
                fail("recv");
            }
            c.received += static_cast<std::size_t>(got);
            if (c.received == size) {
                const auto done = clock_type::now();
                if (done >= warmup_end) {
                    ++messages;
                    rtts.push_back(std::chrono::duration<double, std::micro>(done - c.started).count());
                }
                send_one(c);
            }
        }
    }
    for (auto& c : conns) {
        ::close(c.fd);
    }
    std::sort(rtts.begin(), rtts.end());
    auto pct = [&](double p) {
        return rtts.empty() ? 0.0 : rtts[std::min(rtts.size() - 1, static_cast<std::size_t>(p * static_cast<double>(rtts.size())))];
    };
    std::printf("{\"connections\": %d, \"message_bytes\": %zu, \"seconds\": %.1f, \"messages_per_s\": %.0f, "
                "\"rtt_us_p50\": %.1f, \"rtt_us_p99\": %.1f}\n",
                count, size, seconds, static_cast<double>(messages) / seconds, pct(0.50), pct(0.99));
    return 0;
}
