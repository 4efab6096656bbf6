// The io_uring backend: one ring per io_context. Operations become SQEs whose
// user_data is the operation's address; a deadline adds a linked
// IORING_OP_LINK_TIMEOUT; cancellation is IORING_OP_ASYNC_CANCEL on that
// address. Foreign threads wake the loop through an eventfd that the ring
// always has a read pending on.
#include "backend.hpp"

#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace weft::io::detail {

namespace {

// user_data values that are not operations (operations are 8-aligned).
constexpr std::uint64_t tag_ignore = 1; // cancel and link-timeout completions
constexpr std::uint64_t tag_wakeup = 3; // the eventfd read

void to_timespec(clock::time_point tp, long long (&ts)[2]) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count();
    ts[0] = ns < 0 ? 0 : ns / 1'000'000'000;
    ts[1] = ns < 0 ? 0 : ns % 1'000'000'000;
}

class uring_backend final : public backend {
public:
    explicit uring_backend(io_context::impl& core) noexcept : m_core(core) {}
    ~uring_backend() override {
        if (m_ring_ready) {
            io_uring_queue_exit(&m_ring);
        }
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
        const bool linked = op.kind != op_kind::timeout && op.deadline != clock::time_point::max();
        io_uring_sqe* sqe = get_sqe(linked ? 2 : 1);
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
            to_timespec(op.deadline, op.timespec);
            io_uring_prep_timeout(sqe, reinterpret_cast<__kernel_timespec*>(op.timespec), 0,
                                  IORING_TIMEOUT_ABS);
            break;
        }
        io_uring_sqe_set_data(sqe, &op);
        if (linked) {
            sqe->flags |= IOSQE_IO_LINK;
            io_uring_sqe* t = io_uring_get_sqe(&m_ring); // reserved by get_sqe(2)
            to_timespec(op.deadline, op.timespec);
            io_uring_prep_link_timeout(t, reinterpret_cast<__kernel_timespec*>(op.timespec),
                                       IORING_TIMEOUT_ABS);
            io_uring_sqe_set_data64(t, tag_ignore);
        }
        return true;
    }

    void cancel(operation& op) override {
        io_uring_sqe* sqe = get_sqe(1);
        io_uring_prep_cancel(sqe, &op, 0);
        io_uring_sqe_set_data64(sqe, tag_ignore);
    }

    void poll(bool block) override {
        int r = block ? io_uring_submit_and_wait(&m_ring, 1) : io_uring_submit_and_get_events(&m_ring);
        if (r < 0 && r != -EINTR && r != -ETIME && r != -EBUSY && r != -EAGAIN) {
            throw std::system_error(-r, std::system_category(), "io_uring_submit_and_wait");
        }
        io_uring_cqe* cqe = nullptr;
        while (io_uring_peek_cqe(&m_ring, &cqe) == 0) {
            const std::uint64_t data = cqe->user_data;
            const int res = cqe->res;
            io_uring_cqe_seen(&m_ring, cqe);
            if (data == tag_ignore) {
                continue;
            }
            if (data == tag_wakeup) {
                arm_wakeup();
                continue;
            }
            auto& op = *reinterpret_cast<operation*>(static_cast<std::uintptr_t>(data));
            int result = res;
            if (op.kind == op_kind::timeout) {
                if (res == -ETIME) {
                    result = 0;
                }
            } else if ((res == -ECANCELED || res == -EINTR) && !op.cancel_requested &&
                       op.deadline != clock::time_point::max()) {
                result = -ETIMEDOUT; // the linked timeout fired
            }
            m_core.complete(op, result);
        }
    }

    void wake() noexcept override {
        const std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(m_event_fd, &one, sizeof one);
    }


private:
    /// An SQE, with room for `count` in a row (flushing the queue if full).
    io_uring_sqe* get_sqe(unsigned count) {
        for (;;) {
            if (io_uring_sq_space_left(&m_ring) >= count) {
                return io_uring_get_sqe(&m_ring);
            }
            const int r = io_uring_submit(&m_ring);
            if (r < 0 && r != -EBUSY && r != -EAGAIN && r != -EINTR) {
                throw std::system_error(-r, std::system_category(), "io_uring_submit");
            }
            if (r <= 0) {
                // Completion queue full: reap completions so the kernel can go on.
                io_uring_submit_and_get_events(&m_ring);
            }
        }
    }

    void arm_wakeup() {
        io_uring_sqe* sqe = get_sqe(1);
        io_uring_prep_read(sqe, m_event_fd, &m_wakeup_value, sizeof m_wakeup_value, 0);
        io_uring_sqe_set_data64(sqe, tag_wakeup);
    }

    io_context::impl& m_core;
    io_uring m_ring{};
    bool m_ring_ready = false;
    int m_event_fd = -1;
    std::uint64_t m_wakeup_value = 0;
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
