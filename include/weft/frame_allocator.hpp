/// \file
/// Allocation of coroutine frames, with an optional per-thread recycling cache.
///
/// Every weft coroutine type (task, generator, async_generator and the
/// combinators' helpers) allocates its frame through `frame_allocator`. By
/// default that is plain `::operator new`. After
/// `frame_allocator::enable_recycling(true)`, freed frames are kept in a
/// per-thread cache of size classes (32-byte steps up to 2 KiB, at most
/// `max_cached_per_class` blocks each) and handed out again without touching
/// the global allocator. A frame freed on another thread than the one that
/// allocated it goes into the freeing thread's cache, so memory may migrate
/// between threads; caches are released when their thread exits.
///
/// The switch may be flipped at any time: blocks are always rounded up to their
/// size class, so a frame allocated with recycling off may be cached later and
/// the other way round.
#pragma once

#include <atomic>
#include <cstddef>
#include <new>
#include <utility>

namespace weft {

namespace detail {
struct frame_free_block {
    frame_free_block* next;
};
struct frame_bin {
    frame_free_block* head = nullptr;
    std::size_t count = 0;
};
inline constexpr std::size_t frame_class_count = 64;
// The bins are plain constant-initialised thread-locals, so the hot path
// reads them without an initialisation guard.
constinit inline thread_local frame_bin t_frame_bins[frame_class_count] = {};
} // namespace detail

class frame_allocator {
public:
    static constexpr std::size_t class_step = 32;
    static constexpr std::size_t class_count = detail::frame_class_count;
    static constexpr std::size_t max_class_size = class_step * class_count;
    static constexpr std::size_t max_cached_per_class = 4096;

    /// Turns the per-thread recycling cache on or off for every thread.
    static void enable_recycling(bool on) noexcept {
        // relaxed: the flag selects a policy, it publishes no data; a thread
        // that sees the change late only allocates a few frames the other way.
        s_recycling.store(on, std::memory_order_relaxed);
    }
    static bool recycling() noexcept { return s_recycling.load(std::memory_order_relaxed); }

    static void* allocate(std::size_t size) {
        if (size > max_class_size) {
            return ::operator new(size);
        }
        const std::size_t cls = (size - 1) / class_step;
        if (recycling()) {
            bin& b = detail::t_frame_bins[cls];
            if (free_block* block = b.head) {
                b.head = block->next;
                --b.count;
                return block;
            }
        }
        return ::operator new((cls + 1) * class_step);
    }

    static void deallocate(void* p, std::size_t size) noexcept {
        if (size <= max_class_size && recycling()) {
            bin& b = detail::t_frame_bins[(size - 1) / class_step];
            if (b.count == 0) {
                register_release();
            }
            if (b.count < max_cached_per_class) {
                b.head = ::new (p) free_block{b.head};
                ++b.count;
                return;
            }
        }
        ::operator delete(p);
    }

private:
    using free_block = detail::frame_free_block;
    using bin = detail::frame_bin;
    // Cached blocks go back to the global allocator at thread exit through
    // this object, touched only when a bin goes from empty to non-empty.

    struct releaser {
        ~releaser() {
            for (bin& b : detail::t_frame_bins) {
                while (b.head != nullptr) {
                    ::operator delete(std::exchange(b.head, b.head->next));
                }
                b.count = 0;
            }
        }
    };
    static void register_release() noexcept {
        static thread_local releaser r;
        (void)r;
    }

    static inline std::atomic<bool> s_recycling{false};
};

namespace detail {
/// Mixed into every promise type: routes frame allocation to frame_allocator.
struct frame_allocation {
    static void* operator new(std::size_t size) { return frame_allocator::allocate(size); }
    static void operator delete(void* p, std::size_t size) noexcept {
        frame_allocator::deallocate(p, size);
    }
};
} // namespace detail

} // namespace weft
