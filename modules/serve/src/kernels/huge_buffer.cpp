#include "kernels/huge_buffer.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <new>

namespace weft::serve::kernels {

huge_buffer allocate_huge(std::size_t bytes) {
    constexpr std::size_t huge = std::size_t{2} << 20;
    const bool large = bytes >= huge;
    const std::size_t align = large ? huge : 64;
    const std::size_t size = std::max<std::size_t>(align, (bytes + align - 1) / align * align);
    void* p = std::aligned_alloc(align, size);
    if (p == nullptr) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    if (large) (void)::madvise(p, size, MADV_HUGEPAGE); // advice only: 4 KiB pages otherwise
#endif
    return huge_buffer(static_cast<std::byte*>(p));
}

} // namespace weft::serve::kernels
