// Echo load generator shared by both servers: C connections on one thread,
// each keeps one message of S bytes in flight and sends the next as soon as
// the whole echo came back. Runs for D seconds after a warm-up and prints one
// JSON object: messages per second and round-trip percentiles.
//
// It drives every connection through one io_uring, so that it costs less per
// message than the servers it measures: one multishot recv per connection
// fills a buffer ring, sends post no completion unless they fail, and each
// loop turn submits all the sends it queued and collects all the completions
// in a single system call. Where io_uring is
// unavailable it falls back to epoll (then it is about as costly per message
// as a server, and may be the bottleneck).
//
//   echo_load HOST PORT CONNECTIONS MESSAGE_BYTES SECONDS
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct connection {
    int fd = -1;
    std::size_t sent = 0;     ///< bytes of the current message handed to the kernel (io_uring: 0, all at once)
    std::size_t received = 0; ///< bytes of its echo received
    clock_type::time_point started;
};

[[noreturn]] void fail(const char* what, int err = errno) {
    std::fprintf(stderr, "echo_load: %s: %s\n", what, std::strerror(err));
    std::exit(1);
}

struct settings {
    sockaddr_in address{};
    int count = 0;
    std::size_t size = 0;
    double seconds = 0;
};

/// Round trips measured after the warm-up.
struct tally {
    clock_type::time_point warmup_end;
    clock_type::time_point end;
    long messages = 0;
    std::vector<double> rtts;

    void record(connection& c, clock_type::time_point now) {
        if (now >= warmup_end) {
            ++messages;
            rtts.push_back(std::chrono::duration<double, std::micro>(now - c.started).count());
        }
    }
};

std::vector<connection> connect_all(const settings& s) {
    std::vector<connection> conns(static_cast<std::size_t>(s.count));
    for (auto& c : conns) {
        c.fd = ::socket(AF_INET, SOCK_STREAM, 0);
        if (c.fd < 0 || ::connect(c.fd, reinterpret_cast<const sockaddr*>(&s.address), sizeof s.address) != 0) {
            fail("connect");
        }
        const int one = 1;
        ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return conns;
}

// --- io_uring ---------------------------------------------------------------------------

constexpr unsigned ring_buffers = 1024;
constexpr unsigned ring_buffer_size = 4096;
// The load only counts the bytes it receives, so the ring's entries share a
// few scratch buffers (entry i uses scratch i % scratch_buffers). The
// kernel's copy into them then stays in cache, wherever the ring stands,
// and costs the load as little as it can: the servers stay the bottleneck.
constexpr unsigned scratch_buffers = 16;
constexpr std::uint64_t send_tag = 1ull << 63; // user_data: send of connection i, or recv of i

/// false when io_uring cannot be set up here (then the epoll loop runs).
bool run_uring(const settings& s, std::vector<connection>& conns, tally& t, const std::vector<char>& out) {
    io_uring ring{};
    io_uring_params params{};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    params.cq_entries = 8192;
    if (io_uring_queue_init_params(1024, &ring, &params) < 0) {
        params = {};
        params.flags = IORING_SETUP_CQSIZE;
        params.cq_entries = 8192;
        if (io_uring_queue_init_params(1024, &ring, &params) < 0) {
            return false;
        }
    }
    const std::size_t ring_bytes = ring_buffers * sizeof(io_uring_buf);
    void* mem = ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
    reg.ring_entries = ring_buffers;
    reg.bgid = 0;
    if (mem == MAP_FAILED || io_uring_register_buf_ring(&ring, &reg, 0) < 0) {
        io_uring_queue_exit(&ring);
        return false;
    }
    auto* br = static_cast<io_uring_buf_ring*>(mem);
    std::vector<char> buffers(static_cast<std::size_t>(scratch_buffers) * ring_buffer_size);
    const auto scratch = [&](unsigned id) { return buffers.data() + std::size_t{id % scratch_buffers} * ring_buffer_size; };
    io_uring_buf_ring_init(br);
    const int mask = io_uring_buf_ring_mask(ring_buffers);
    for (unsigned i = 0; i < ring_buffers; ++i) {
        io_uring_buf_ring_add(br, scratch(i), ring_buffer_size,
                              static_cast<unsigned short>(i), mask, static_cast<int>(i));
    }
    io_uring_buf_ring_advance(br, static_cast<int>(ring_buffers));

    auto sqe = [&] {
        io_uring_sqe* e = io_uring_get_sqe(&ring);
        while (e == nullptr) {
            io_uring_submit(&ring);
            e = io_uring_get_sqe(&ring);
        }
        return e;
    };
    auto arm_recv = [&](std::size_t i) {
        io_uring_sqe* e = sqe();
        io_uring_prep_recv_multishot(e, conns[i].fd, nullptr, 0, 0);
        e->flags |= IOSQE_BUFFER_SELECT;
        e->buf_group = 0;
        io_uring_sqe_set_data64(e, i);
    };
    // Sends wait until every byte is taken (MSG_WAITALL) and post no
    // completion when they succeed: a message costs one submission and the
    // completions of its echo only.
    auto send_rest = [&](std::size_t i) {
        connection& c = conns[i];
        io_uring_sqe* e = sqe();
        io_uring_prep_send(e, c.fd, out.data() + c.sent, s.size - c.sent, MSG_NOSIGNAL | MSG_WAITALL);
        e->flags |= IOSQE_CQE_SKIP_SUCCESS;
        io_uring_sqe_set_data64(e, send_tag | i);
    };
    auto start_message = [&](std::size_t i, clock_type::time_point now) {
        conns[i].started = now;
        conns[i].sent = 0;
        conns[i].received = 0;
        send_rest(i);
    };

    const auto now0 = clock_type::now();
    for (std::size_t i = 0; i < conns.size(); ++i) {
        arm_recv(i);
        start_message(i, now0);
    }
    // Each wait asks for a batch of echoes (an eighth of the connections), or
    // 50 us, whichever comes first: the server's sends then rarely have to
    // wake this thread, and each turn handles many echoes.
    const unsigned batch = std::max(1u, static_cast<unsigned>(conns.size() / 8));
    for (;;) {
        __kernel_timespec wait_limit{0, 50'000};
        io_uring_cqe* first = nullptr;
        io_uring_submit_and_wait_timeout(&ring, &first, batch, &wait_limit, nullptr);
        const auto now = clock_type::now();
        if (now >= t.end) {
            break;
        }
        unsigned head = 0;
        unsigned seen = 0;
        unsigned recycled = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&ring, head, cqe) {
            ++seen;
            const std::uint64_t data = cqe->user_data;
            const int res = cqe->res;
            const std::size_t i = static_cast<std::size_t>(data & ~send_tag);
            connection& c = conns[i];
            if ((data & send_tag) != 0) { // only failures post a completion
                fail("send", res < 0 ? -res : EIO);
            }
            if ((cqe->flags & IORING_CQE_F_BUFFER) != 0) {
                const unsigned id = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                io_uring_buf_ring_add(br, scratch(id), ring_buffer_size,
                                      static_cast<unsigned short>(id), mask, static_cast<int>(recycled));
                ++recycled;
            }
            if (res == -ENOBUFS || (res >= 0 && (cqe->flags & IORING_CQE_F_MORE) == 0 && res != 0)) {
                arm_recv(i); // the ring ran dry or the request ended: arm again
            } else if (res == 0) {
                std::fprintf(stderr, "echo_load: server closed a connection\n");
                std::exit(1);
            } else if (res < 0) {
                fail("recv", -res);
            }
            if (res > 0) {
                c.received += static_cast<std::size_t>(res);
                if (c.received == s.size) {
                    t.record(c, now);
                    start_message(i, now);
                }
            }
        }
        if (recycled != 0) {
            io_uring_buf_ring_advance(br, static_cast<int>(recycled));
        }
        io_uring_cq_advance(&ring, seen);
    }
    io_uring_queue_exit(&ring);
    ::munmap(mem, ring_bytes);
    return true;
}

// --- epoll fallback -----------------------------------------------------------------------

void run_epoll(const settings& s, std::vector<connection>& conns, tally& t, const std::vector<char>& out) {
    const int ep = ::epoll_create1(0);
    std::vector<char> in(s.size);
    for (std::size_t i = 0; i < conns.size(); ++i) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = i;
        ::epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    auto send_one = [&](connection& c, clock_type::time_point now) {
        c.started = now;
        c.received = 0;
        for (std::size_t off = 0; off < s.size;) { // blocking sockets: a message fits the socket buffer
            const ssize_t n = ::send(c.fd, out.data() + off, s.size - off, MSG_NOSIGNAL);
            if (n <= 0) {
                fail("send");
            }
            off += static_cast<std::size_t>(n);
        }
    };
    for (auto& c : conns) {
        send_one(c, clock_type::now());
    }
    std::vector<epoll_event> events(256);
    for (;;) {
        const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
        const auto now = clock_type::now();
        if (now >= t.end) {
            break;
        }
        for (int k = 0; k < n; ++k) {
            connection& c = conns[events[static_cast<std::size_t>(k)].data.u64];
            const ssize_t got = ::recv(c.fd, in.data(), s.size - c.received, MSG_DONTWAIT);
            if (got == 0) {
                std::fprintf(stderr, "echo_load: server closed a connection\n");
                std::exit(1);
            }
            if (got < 0) {
                if (errno == EAGAIN) {
                    continue;
                }
                fail("recv");
            }
            c.received += static_cast<std::size_t>(got);
            if (c.received == s.size) {
                t.record(c, now);
                send_one(c, now);
            }
        }
    }
    ::close(ep);
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: echo_load HOST PORT CONNECTIONS MESSAGE_BYTES SECONDS\n");
        return 2;
    }
    settings s;
    s.address.sin_family = AF_INET;
    s.address.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[2])));
    if (::inet_pton(AF_INET, argv[1], &s.address.sin_addr) != 1) {
        fail("bad address", EINVAL);
    }
    s.count = std::atoi(argv[3]);
    s.size = static_cast<std::size_t>(std::atol(argv[4]));
    s.seconds = std::atof(argv[5]);
    if (s.count <= 0 || s.size == 0 || s.seconds <= 0) {
        fail("bad arguments", EINVAL);
    }

    std::vector<connection> conns = connect_all(s);
    const std::vector<char> out(s.size, 'x');
    tally t;
    t.rtts.reserve(1 << 22);
    t.warmup_end = clock_type::now() + std::chrono::milliseconds(500);
    t.end = t.warmup_end + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(s.seconds));
    const char* driver = "io_uring";
    if (!run_uring(s, conns, t, out)) {
        driver = "epoll";
        run_epoll(s, conns, t, out);
    }
    for (auto& c : conns) {
        ::close(c.fd);
    }
    std::sort(t.rtts.begin(), t.rtts.end());
    auto pct = [&](double p) {
        return t.rtts.empty()
                   ? 0.0
                   : t.rtts[std::min(t.rtts.size() - 1, static_cast<std::size_t>(p * static_cast<double>(t.rtts.size())))];
    };
    std::printf("{\"connections\": %d, \"message_bytes\": %zu, \"seconds\": %.1f, \"messages_per_s\": %.0f, "
                "\"rtt_us_p50\": %.1f, \"rtt_us_p99\": %.1f, \"client\": \"%s\"}\n",
                s.count, s.size, s.seconds, static_cast<double>(t.messages) / s.seconds, pct(0.50), pct(0.99), driver);
    return 0;
}
