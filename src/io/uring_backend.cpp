// The io_uring backend: one ring per io_context. Operations become SQEs whose
// user_data is the operation's address; cancellation is IORING_OP_ASYNC_CANCEL
// on that address. Deadlines and timers live in the loop's timer heap, which
// bounds each wait (io_uring_submit_and_wait_timeout), so no operation needs
// a linked timeout. Multishot requests (accept, recv) carry the address of
// their owner's state with bit 1 set. Foreign threads wake the loop through
// an eventfd that the ring always has a read pending on.
#include "backend.hpp"

#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <unordered_map>
#include <vector>

namespace weft::io::detail {

namespace {

// user_data values that are not operations (operations are 8-aligned).
constexpr std::uint64_t tag_ignore = 1;    // cancel completions
constexpr std::uint64_t tag_wakeup = 3;    // the eventfd read
constexpr std::uint64_t tag_multishot = 2; // or'ed into a multishot owner's address

// The buffer ring: lazily set up on first use, shared by every stream of the
// context that opts in. 4 KiB buffers, a typical socket read; a pool of 1024
// (4 MiB) covers many connections each holding a few unread chunks.
//
// The kernel takes posted buffers in ring order, so every posted buffer is
// written in turn: with the whole pool posted, each receive would land in
// memory last touched 1024 receives ago, far out of cache. Only a working
// set is posted (`ring_posted_start`, grown by `ring_grow_step` each time a
// receive finds the ring dry); a returned buffer goes straight back to the
// ring while it is below that size, else onto a stack of spares whose most
// recently returned (hottest) buffer is posted first.
constexpr unsigned ring_buffer_count = 1024;
constexpr unsigned ring_buffer_size = 4096;
constexpr unsigned ring_posted_start = 64;
constexpr unsigned ring_grow_step = 4;
constexpr unsigned short ring_group = 0;

class uring_backend final : public backend {
public:
    explicit uring_backend(io_context::impl& core) noexcept : m_core(core) {}
    ~uring_backend() override {
        if (m_ring_ready) {
            io_uring_queue_exit(&m_ring); // the kernel drops every request first
        }
        m_orphans.clear();
        if (m_buf_ring != nullptr) {
            ::munmap(m_buf_ring, m_buf_ring_bytes);
        }
        delete[] m_buffers;
        if (m_event_fd >= 0) {
            ::close(m_event_fd);
        }
    }

    /// Creates the ring, probing the setup flags from best to plainest.
    /// Returns 0 or -errno.
    int init() {
        const unsigned flag_sets[] = {
            // R_DISABLED: the thread that enables the ring (the loop thread,
            // in attach) becomes its single issuer, not the constructing one.
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
            IORING_SETUP_COOP_TASKRUN,
            0,
        };
        int r = -ENOSYS;
        for (unsigned flags : flag_sets) {
            io_uring_params params{};
            params.flags = flags;
            // A completion queue four times the submission queue: multishot
            // requests complete many times per submission.
            params.flags |= IORING_SETUP_CQSIZE;
            params.cq_entries = 4 * 256;
            r = io_uring_queue_init_params(256, &m_ring, &params);
            if (r != -EINVAL) {
                break;
            }
        }
        if (r < 0) {
            return r;
        }
        m_ring_ready = true;
        m_event_fd = ::eventfd(0, EFD_CLOEXEC);
        return m_event_fd < 0 ? -errno : 0;
    }

    void attach() override {
        if ((m_ring.flags & IORING_SETUP_R_DISABLED) != 0) {
            // The enabling thread becomes the ring's single issuer.
            // (io_uring_enable_rings is declared by liburing 2.3 but not exported.)
            if (::syscall(__NR_io_uring_register, m_ring.ring_fd, IORING_REGISTER_ENABLE_RINGS,
                          nullptr, 0) < 0) {
                throw std::system_error(errno, std::system_category(), "IORING_REGISTER_ENABLE_RINGS");
            }
        }
        arm_wakeup();
    }

    bool start(operation& op) override {
        io_uring_sqe* sqe = get_sqe();
        switch (op.kind) {
        case op_kind::recv:
            io_uring_prep_recv(sqe, op.fd, op.buffer, op.length, 0);
            break;
        case op_kind::send:
            io_uring_prep_send(sqe, op.fd, op.buffer, op.length, MSG_NOSIGNAL);
            break;
        case op_kind::read:
            io_uring_prep_read(sqe, op.fd, op.buffer, static_cast<unsigned>(op.length), op.offset);
            break;
        case op_kind::write:
            io_uring_prep_write(sqe, op.fd, op.buffer, static_cast<unsigned>(op.length), op.offset);
            break;
        case op_kind::accept:
            io_uring_prep_accept(sqe, op.fd, nullptr, nullptr, SOCK_CLOEXEC);
            break;
        case op_kind::connect:
            io_uring_prep_connect(sqe, op.fd, reinterpret_cast<const sockaddr*>(op.address),
                                  op.address_length);
            break;
        case op_kind::poll_in:
            io_uring_prep_poll_add(sqe, op.fd, POLLIN);
            break;
        case op_kind::timeout:
        case op_kind::wait:
        case op_kind::callback:
            break; // never reach the backend
        }
        io_uring_sqe_set_data(sqe, &op);
        return true;
    }

    void cancel(operation& op) override {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_cancel(sqe, &op, 0);
        io_uring_sqe_set_data64(sqe, tag_ignore);
    }

    void poll(bool block, clock::time_point wake_at) override {
        int r = 0;
        if (!block) {
            r = io_uring_submit_and_get_events(&m_ring);
        } else if (wake_at == clock::time_point::max()) {
            r = io_uring_submit_and_wait(&m_ring, 1);
        } else {
            const auto ns = std::max<std::int64_t>(
                0, std::chrono::duration_cast<std::chrono::nanoseconds>(wake_at - clock::now()).count());
            __kernel_timespec ts{ns / 1'000'000'000, ns % 1'000'000'000};
            io_uring_cqe* first = nullptr;
            r = io_uring_submit_and_wait_timeout(&m_ring, &first, 1, &ts, nullptr);
        }
        if (r < 0 && r != -EINTR && r != -ETIME && r != -EBUSY && r != -EAGAIN) {
            throw std::system_error(-r, std::system_category(), "io_uring_submit_and_wait");
        }
        reap();
    }

    void flush() override {
        if (io_uring_sq_ready(&m_ring) != 0) {
            // With DEFER_TASKRUN a cancellation finishes in task work, which
            // only runs when events are asked for: ask, so that a cancelled
            // multishot accept lets go of its socket now.
            const int r = io_uring_submit_and_get_events(&m_ring);
            if (r < 0 && r != -EBUSY && r != -EAGAIN && r != -EINTR) {
                throw std::system_error(-r, std::system_category(), "io_uring_submit");
            }
        }
    }

    void wake() noexcept override {
        const std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(m_event_fd, &one, sizeof one);
    }

    // --- Multishot and the buffer ring ------------------------------------------------

    bool multishot_accept_possible() const noexcept override { return m_multishot_accept; }

    bool buffer_ring_available() override {
        if (m_buf_ring == nullptr && m_buf_ring_possible) {
            setup_buffer_ring();
        }
        return m_buf_ring != nullptr && m_buf_ring_usable;
    }

    void start_multishot_accept(multishot& m, int fd) override {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, tag_of(m));
    }

    void start_multishot_recv(multishot& m, int fd) override {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = ring_group;
        io_uring_sqe_set_data64(sqe, tag_of(m));
    }

    void cancel_multishot(multishot& m) override {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_cancel64(sqe, tag_of(m), 0);
        io_uring_sqe_set_data64(sqe, tag_ignore);
    }

    ring_buffer buffer(unsigned id, std::size_t size) override {
        return {m_buffers + static_cast<std::size_t>(id) * ring_buffer_size, size};
    }

    void recycle_buffer(unsigned id) override {
        if (m_posted < m_posted_target) {
            post_buffer(id);
        } else {
            m_spare_buffers.push_back(static_cast<std::uint16_t>(id));
        }
    }

    void buffer_ring_ran_dry() override {
        m_posted_target = std::min(ring_buffer_count, m_posted_target + ring_grow_step);
        top_up_buffer_ring();
    }

    void adopt_orphan(std::unique_ptr<multishot> m) override {
        multishot* key = m.get();
        m_orphans.emplace(key, std::move(m));
    }

    void disable_multishot_accept() noexcept override { m_multishot_accept = false; }
    void disable_buffer_ring() noexcept override { m_buf_ring_usable = false; }

private:
    static std::uint64_t tag_of(multishot& m) noexcept {
        return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&m)) | tag_multishot;
    }

    /// Hands every available completion to its operation or multishot owner.
    void reap() {
        io_uring_cqe* cqe = nullptr;
        while (io_uring_peek_cqe(&m_ring, &cqe) == 0) {
            const std::uint64_t data = cqe->user_data;
            const int res = cqe->res;
            const unsigned flags = cqe->flags;
            io_uring_cqe_seen(&m_ring, cqe);
            if (data == tag_ignore || data == LIBURING_UDATA_TIMEOUT) {
                continue;
            }
            if (data == tag_wakeup) {
                arm_wakeup();
                continue;
            }
            if ((data & 7) == tag_multishot) {
                auto* m = reinterpret_cast<multishot*>(static_cast<std::uintptr_t>(data & ~std::uint64_t{7}));
                const bool more = (flags & IORING_CQE_F_MORE) != 0;
                const bool has_buffer = (flags & IORING_CQE_F_BUFFER) != 0;
                if (has_buffer) {
                    --m_posted; // the kernel took one: a spare replaces it
                    top_up_buffer_ring();
                }
                m->on_completion(res, flags >> IORING_CQE_BUFFER_SHIFT, has_buffer, more);
                if (!more && !m_orphans.empty()) {
                    m_orphans.erase(m); // an orphan's last completion: delete it
                }
                continue;
            }
            auto& op = *reinterpret_cast<operation*>(static_cast<std::uintptr_t>(data));
            m_core.complete(op, res);
        }
    }

    void setup_buffer_ring() {
        m_buf_ring_possible = false; // one try per context
        m_buf_ring_bytes = ring_buffer_count * sizeof(io_uring_buf);
        void* mem = ::mmap(nullptr, m_buf_ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        if (mem == MAP_FAILED) {
            return;
        }
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
        reg.ring_entries = ring_buffer_count;
        reg.bgid = ring_group;
        if (io_uring_register_buf_ring(&m_ring, &reg, 0) < 0) {
            ::munmap(mem, m_buf_ring_bytes);
            return;
        }
        m_buf_ring = static_cast<io_uring_buf_ring*>(mem);
        // Not value-initialised: a buffer's pages are touched first by the
        // kernel, when it is first posted and written.
        m_buffers = new std::byte[static_cast<std::size_t>(ring_buffer_count) * ring_buffer_size];
        io_uring_buf_ring_init(m_buf_ring);
        m_spare_buffers.reserve(ring_buffer_count);
        for (unsigned i = ring_buffer_count; i-- > 0;) {
            m_spare_buffers.push_back(static_cast<std::uint16_t>(i)); // buffer 0 on top
        }
        top_up_buffer_ring();
    }

    /// Posts buffer `id` at the ring's tail.
    void post_buffer(unsigned id) {
        io_uring_buf_ring_add(m_buf_ring, m_buffers + static_cast<std::size_t>(id) * ring_buffer_size,
                              ring_buffer_size, static_cast<unsigned short>(id),
                              io_uring_buf_ring_mask(ring_buffer_count), 0);
        io_uring_buf_ring_advance(m_buf_ring, 1);
        ++m_posted;
    }

    /// Posts spares, hottest first, until the working set is posted.
    void top_up_buffer_ring() {
        while (m_posted < m_posted_target && !m_spare_buffers.empty()) {
            post_buffer(m_spare_buffers.back());
            m_spare_buffers.pop_back();
        }
    }

    /// An SQE (flushing the submission queue if it is full).
    io_uring_sqe* get_sqe() {
        for (;;) {
            if (io_uring_sqe* sqe = io_uring_get_sqe(&m_ring)) {
                return sqe;
            }
            const int r = io_uring_submit(&m_ring);
            if (r < 0 && r != -EBUSY && r != -EAGAIN && r != -EINTR) {
                throw std::system_error(-r, std::system_category(), "io_uring_submit");
            }
            if (r <= 0) {
                // Completion queue overflowing: let the kernel flush it.
                io_uring_submit_and_get_events(&m_ring);
            }
        }
    }

    void arm_wakeup() {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_read(sqe, m_event_fd, &m_wakeup_value, sizeof m_wakeup_value, 0);
        io_uring_sqe_set_data64(sqe, tag_wakeup);
    }

    io_context::impl& m_core;
    io_uring m_ring{};
    bool m_ring_ready = false;
    bool m_multishot_accept = true;
    bool m_buf_ring_possible = true;
    bool m_buf_ring_usable = true; ///< false once multishot recv proved unsupported
    int m_event_fd = -1;
    std::uint64_t m_wakeup_value = 0;
    io_uring_buf_ring* m_buf_ring = nullptr;
    std::size_t m_buf_ring_bytes = 0;
    std::byte* m_buffers = nullptr;
    std::vector<std::uint16_t> m_spare_buffers; ///< not posted; the last one returned on top
    unsigned m_posted = 0;                      ///< posted and not yet taken by the kernel
    unsigned m_posted_target = ring_posted_start;
    std::unordered_map<multishot*, std::unique_ptr<multishot>> m_orphans;
};

} // namespace

std::unique_ptr<backend> make_uring_backend(io_context::impl& core, std::string& why_not) {
    auto b = std::make_unique<uring_backend>(core);
    if (const int r = b->init(); r < 0) {
        why_not = std::strerror(-r);
        return nullptr;
    }
    return b;
}

} // namespace weft::io::detail
