/// \file
/// `channel<T>`: a bounded multi-producer multi-consumer queue between
/// coroutines, with back-pressure, and `channel_closed`.
///
/// `channel<T> ch{capacity};` — `co_await ch.send(v)` suspends while the
/// buffer is full; `co_await ch.receive()` yields `std::optional<T>`,
/// suspending while it is empty. Values come out in the order they went in;
/// suspended senders and receivers are served first come, first served. A
/// send that finds a receiver waiting hands it the value directly, and a
/// receive that frees a slot moves the oldest waiting sender's value into
/// it, resuming the other side (through the trampoline, on the calling
/// thread). Capacity 0 makes a rendezvous channel: every send waits for a
/// receiver to take its value and the other way round. Everything is
/// guarded by one small spin lock per channel.
///
/// Closing: `close()` (idempotent) makes every pending and later `send`
/// (and `try_send`) throw `channel_closed`; the values of those sends are
/// never enqueued and are destroyed with their awaiter. Receivers first
/// drain the values already buffered, then get `std::nullopt` (pending
/// receivers at once, since they only wait on an empty buffer).
/// `channel_closed` derives from `std::logic_error`: sending on a closed
/// channel breaks the protocol between producers and consumers, as in Go,
/// and is not a runtime condition to retry.
///
/// Cancellation: a waiting `send` or `receive` watches the awaiting
/// coroutine's stop token (or the one passed to `send(v, token)` /
/// `receive(token)`, which replaces it). On stop it leaves the queue and
/// throws `operation_cancelled`; a cancelled send never enqueued its value
/// (it is destroyed with the awaiter, not silently dropped from the
/// channel), and a cancelled receive took nothing. An operation that can
/// complete at once completes even when stop was already requested; one that
/// would have to wait, with stop already requested, throws at once without
/// suspending. A send whose value was taken (or a receive that was handed a
/// value) before its stop callback ran completes normally: no value is ever
/// lost or duplicated.
///
/// Requirements on T: an object type, nothrow move-constructible (values are
/// moved under the channel's lock, where a throwing move could not be undone)
/// and nothrow destructible. Move-only types are fine.
///
/// Lifetime: the channel must outlive every waiter; destroying it while
/// coroutines wait on it is undefined (asserted in debug builds). Values
/// still buffered are destroyed with it.
/// Threading: every member is thread-safe.
#pragma once

#include <weft/detail/spin_mutex.hpp>
#include <weft/detail/waiter.hpp>

#include <cassert>
#include <coroutine>
#include <cstddef>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <type_traits>
#include <utility>

namespace weft {

/// Thrown by `send` and `try_send` on a closed channel.
class channel_closed : public std::logic_error {
public:
    channel_closed() : std::logic_error("weft: send on a closed channel") {}
};

template <class T>
class channel {
    static_assert(std::is_object_v<T> && !std::is_const_v<T> && !std::is_array_v<T>,
                  "weft::channel<T>: T must be a non-const, non-array object type");
    static_assert(std::is_nothrow_move_constructible_v<T>,
                  "weft::channel<T>: T must be nothrow move-constructible");
    static_assert(std::is_nothrow_destructible_v<T>,
                  "weft::channel<T>: T must be nothrow destructible");

public:
    using value_type = T;

    class receive_awaiter;

    /// `co_await send(v)`: the value lives in the awaiter until it is taken.
    class [[nodiscard]] send_awaiter : public detail::wait_operation<channel> {
    public:
        send_awaiter(channel& c, T&& value) noexcept
            : detail::wait_operation<channel>(c), m_value(std::move(value)) {}
        send_awaiter(channel& c, T&& value, std::stop_token t) noexcept
            : detail::wait_operation<channel>(c, std::move(t)), m_value(std::move(value)) {}

        bool await_ready() const noexcept { return false; }

        template <class Promise>
        bool await_suspend(std::coroutine_handle<Promise> h) noexcept {
            const std::stop_token& token = this->token_for(h.promise());
            channel& ch = *this->m_primitive;
            detail::waiter* receiver = nullptr;
            {
                std::lock_guard<detail::spin_mutex> guard(ch.m_lock);
                if (ch.m_closed) {
                    this->m_outcome = detail::wait_outcome::closed;
                    return false;
                }
                if (!ch.m_receivers.empty()) {
                    receiver = &ch.hand_to_receiver(std::move(m_value));
                    this->m_outcome = detail::wait_outcome::completed;
                } else if (ch.m_size < ch.m_capacity) {
                    ch.push_back(std::move(m_value));
                    this->m_outcome = detail::wait_outcome::completed;
                    return false;
                } else if (token.stop_requested()) {
                    this->m_outcome = detail::wait_outcome::cancelled;
                    return false;
                } else {
                    this->m_handle = h;
                    ch.m_senders.push_back(*this);
                }
            }
            if (receiver != nullptr) {
                receiver->wake(); // last use of the receiver
                return false;
            }
            return this->arm(token);
        }

        void await_resume() {
            if (this->disarm_or_throw() == detail::wait_outcome::closed) {
                throw channel_closed();
            }
        }

    private:
        friend class channel;
        T m_value;
    };

    /// `co_await receive()`: a value, or `std::nullopt` once the channel is
    /// closed and drained.
    class [[nodiscard]] receive_awaiter : public detail::wait_operation<channel> {
    public:
        explicit receive_awaiter(channel& c) noexcept : detail::wait_operation<channel>(c) {}
        receive_awaiter(channel& c, std::stop_token t) noexcept
            : detail::wait_operation<channel>(c, std::move(t)) {}

        bool await_ready() const noexcept { return false; }

        template <class Promise>
        bool await_suspend(std::coroutine_handle<Promise> h) noexcept {
            const std::stop_token& token = this->token_for(h.promise());
            channel& ch = *this->m_primitive;
            bool taken = false;
            detail::waiter* sender = nullptr;
            {
                std::lock_guard<detail::spin_mutex> guard(ch.m_lock);
                if (ch.m_size != 0 || !ch.m_senders.empty()) {
                    sender = ch.take_into(m_value);
                    this->m_outcome = detail::wait_outcome::completed;
                    taken = true;
                } else if (ch.m_closed) {
                    this->m_outcome = detail::wait_outcome::closed;
                    return false;
                } else if (token.stop_requested()) {
                    this->m_outcome = detail::wait_outcome::cancelled;
                    return false;
                } else {
                    this->m_handle = h;
                    ch.m_receivers.push_back(*this);
                }
            }
            // `taken`, not m_outcome: once linked and unlocked, m_outcome
            // belongs to whoever unlinks us.
            if (taken) {
                if (sender != nullptr) {
                    sender->wake(); // last use of the sender
                }
                return false;
            }
            return this->arm(token);
        }

        std::optional<T> await_resume() {
            this->disarm_or_throw();
            return std::move(m_value);
        }

    private:
        friend class channel;
        std::optional<T> m_value;
    };

    /// A channel buffering up to `capacity` values; 0 makes it a rendezvous.
    explicit channel(std::size_t capacity)
        : m_slots(capacity == 0 ? nullptr : std::make_unique_for_overwrite<slot[]>(capacity)),
          m_capacity(capacity) {}
    channel(const channel&) = delete;
    channel& operator=(const channel&) = delete;
    ~channel() {
        assert(m_senders.empty() && m_receivers.empty() &&
               "weft: channel destroyed while coroutines wait on it");
        while (m_size != 0) {
            pop_front();
        }
    }

    /// Sends `value`, suspending while the buffer is full. Throws
    /// `channel_closed` if the channel is or becomes closed first. Watches
    /// the awaiting coroutine's stop token.
    send_awaiter send(T value) noexcept { return send_awaiter(*this, std::move(value)); }
    /// As `send(value)`, watching `token` instead of the coroutine's.
    send_awaiter send(T value, std::stop_token token) noexcept {
        return send_awaiter(*this, std::move(value), std::move(token));
    }

    /// Receives the oldest value, suspending while the channel is empty and
    /// open; `std::nullopt` once it is closed and drained. Watches the
    /// awaiting coroutine's stop token.
    receive_awaiter receive() noexcept { return receive_awaiter(*this); }
    /// As `receive()`, watching `token` instead of the coroutine's.
    receive_awaiter receive(std::stop_token token) noexcept {
        return receive_awaiter(*this, std::move(token));
    }

    /// Sends without waiting: true if the value was buffered or handed to a
    /// waiting receiver; false (and `value` untouched) when the buffer is
    /// full. Throws `channel_closed` on a closed channel.
    bool try_send(T&& value) { return try_send_impl(std::move(value)); }
    bool try_send(const T& value)
        requires std::is_copy_constructible_v<T>
    {
        return try_send_impl(value);
    }

    /// Receives without waiting: the oldest value, or `std::nullopt` when
    /// none is ready (use `is_closed()` to tell "closed and drained" apart).
    std::optional<T> try_receive() {
        std::optional<T> value;
        detail::waiter* sender = nullptr;
        {
            std::lock_guard<detail::spin_mutex> guard(m_lock);
            if (m_size == 0 && m_senders.empty()) {
                return value;
            }
            sender = take_into(value);
        }
        if (sender != nullptr) {
            sender->wake(); // last use of the sender
        }
        return value;
    }

    /// Closes the channel: pending senders throw `channel_closed`, pending
    /// receivers get `std::nullopt`. Idempotent.
    void close() noexcept {
        detail::waiter_list::batch senders;
        detail::waiter_list::batch receivers;
        {
            std::lock_guard<detail::spin_mutex> guard(m_lock);
            if (m_closed) {
                return;
            }
            m_closed = true;
            senders = m_senders.take_all(detail::wait_outcome::closed);
            receivers = m_receivers.take_all(detail::wait_outcome::closed);
        }
        // Last use of the waiters and of *this: a woken coroutine may run
        // inline and destroy the channel.
        senders.wake_all();
        receivers.wake_all();
    }

    [[nodiscard]] bool is_closed() const noexcept {
        std::lock_guard<detail::spin_mutex> guard(m_lock);
        return m_closed;
    }

    /// A snapshot of the number of buffered values.
    [[nodiscard]] std::size_t size() const noexcept {
        std::lock_guard<detail::spin_mutex> guard(m_lock);
        return m_size;
    }

    [[nodiscard]] std::size_t capacity() const noexcept { return m_capacity; }

private:
    template <class>
    friend struct detail::cancel_on_stop;

    struct slot {
        alignas(T) unsigned char bytes[sizeof(T)];
    };

    T* slot_at(std::size_t i) noexcept {
        return std::launder(reinterpret_cast<T*>(m_slots[i].bytes));
    }

    // The ring buffer; all under m_lock.
    template <class U>
    void push_back(U&& value) {
        assert(m_size < m_capacity);
        std::size_t i = m_head + m_size;
        if (i >= m_capacity) {
            i -= m_capacity;
        }
        ::new (static_cast<void*>(m_slots[i].bytes)) T(std::forward<U>(value));
        ++m_size;
    }

    void pop_front() noexcept {
        assert(m_size != 0);
        slot_at(m_head)->~T();
        if (++m_head == m_capacity) {
            m_head = 0;
        }
        --m_size;
    }

    // Under m_lock, with a receiver waiting: gives it `value` (constructed in
    // place, before unlinking, so a throwing copy leaves everything as it
    // was) and returns it, unlinked, for the caller to wake after unlocking.
    template <class U>
    detail::waiter& hand_to_receiver(U&& value) {
        auto& r = static_cast<receive_awaiter&>(*m_receivers.front());
        r.m_value.emplace(std::forward<U>(value));
        m_receivers.pop_front();
        r.m_outcome = detail::wait_outcome::completed;
        return r;
    }

    // Under m_lock, with a value buffered or a sender waiting: moves the
    // oldest value into `out`; if a sender waits, its value fills the freed
    // slot (or, unbuffered, goes straight to `out`) and the sender, unlinked
    // and completed, is returned for the caller to wake after unlocking.
    detail::waiter* take_into(std::optional<T>& out) noexcept {
        if (m_size != 0) {
            out.emplace(std::move(*slot_at(m_head)));
            pop_front();
            if (m_senders.empty()) {
                return nullptr;
            }
            auto& s = static_cast<send_awaiter&>(m_senders.pop_front());
            push_back(std::move(s.m_value));
            s.m_outcome = detail::wait_outcome::completed;
            return &s;
        }
        auto& s = static_cast<send_awaiter&>(m_senders.pop_front());
        out.emplace(std::move(s.m_value));
        s.m_outcome = detail::wait_outcome::completed;
        return &s;
    }

    template <class U>
    bool try_send_impl(U&& value) {
        detail::waiter* receiver = nullptr;
        {
            std::lock_guard<detail::spin_mutex> guard(m_lock);
            if (m_closed) {
                throw channel_closed();
            }
            if (!m_receivers.empty()) {
                receiver = &hand_to_receiver(std::forward<U>(value));
            } else if (m_size < m_capacity) {
                push_back(std::forward<U>(value));
                return true;
            } else {
                return false;
            }
        }
        receiver->wake(); // last use of the receiver
        return true;
    }

    void cancel_waiter(detail::waiter& w) noexcept {
        detail::cancel_waiter(m_lock, w, [](detail::waiter_list&) {});
    }

    mutable detail::spin_mutex m_lock;
    std::unique_ptr<slot[]> m_slots;
    std::size_t m_capacity;
    std::size_t m_head = 0;
    std::size_t m_size = 0;
    bool m_closed = false;
    detail::waiter_list m_senders;
    detail::waiter_list m_receivers;
};

} // namespace weft
