// A replacement global operator new that counts heap allocations per thread (a
// plain thread_local increment, no atomics), so that benchmarks can report
// allocations per coroutine frame. Kept in its own translation unit so that
// the compiler never sees malloc/free through an inlined operator new/delete.
//
// Only ::operator new is counted: asio allocates its awaitable frames with
// std::aligned_alloc, which this does not see.

#include <cstdint>
#include <cstdlib>
#include <new>

namespace {
constinit thread_local std::uint64_t t_allocations = 0;
} // namespace

namespace weft_bench {
/// Global operator new calls made by the calling thread so far.
std::uint64_t thread_allocations() noexcept { return t_allocations; }
} // namespace weft_bench

void* operator new(std::size_t size) {
    ++t_allocations;
    if (size == 0) {
        size = 1;
    }
    for (;;) {
        if (void* p = std::malloc(size)) {
            return p;
        }
        std::new_handler handler = std::get_new_handler();
        if (handler == nullptr) {
            throw std::bad_alloc();
        }
        handler();
    }
}
void* operator new[](std::size_t size) { return ::operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
