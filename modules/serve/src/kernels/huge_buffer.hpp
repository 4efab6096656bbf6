// Internal: large buffers for weights the CPU backend rearranges at load
// (F32 panels, prepacked Q8_0 rows). Big ones are 2 MiB aligned and advised
// to use transparent huge pages, so streaming them through a decode step
// costs no TLB miss per 4 KiB; small ones are 64-byte aligned (one cache
// line, one zmm load).
//
// Threading: allocate_huge is reentrant; a buffer is plain memory.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>

namespace weft::serve::kernels {

struct free_deleter {
    void operator()(std::byte* p) const noexcept { std::free(p); }
};
using huge_buffer = std::unique_ptr<std::byte[], free_deleter>;

/// At least `bytes` bytes (contents unspecified); throws std::bad_alloc.
huge_buffer allocate_huge(std::size_t bytes);

} // namespace weft::serve::kernels
