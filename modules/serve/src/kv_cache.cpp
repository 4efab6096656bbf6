#include <weft/serve/kv_cache.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <new>
#include <stdexcept>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace weft::serve {

namespace {

std::size_t element_bytes(ggml_type type) {
    switch (type) {
    case ggml_type::f32: return sizeof(float);
    case ggml_type::f16: return sizeof(std::uint16_t);
    default: throw std::invalid_argument("kv_cache: the element type must be f32 or f16");
    }
}

/// n floats to F16 bits, rounding to nearest even (F16C when the CPU has it).
void to_f16_scalar(const float* x, std::uint16_t* out, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

#if defined(__x86_64__)
__attribute__((target("avx,f16c"))) void to_f16_f16c(const float* x, std::uint16_t* out, std::size_t n) noexcept {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
    }
    // GCC emits no vzeroupper before a tail call (here into code built
    // without AVX): the upper halves stayed dirty, and every SSE instruction
    // the thread ran until the next AVX function's exit paid for it. The
    // `tiny` model among 1000 clients served 7,200-7,600 requests/s with an
    // F16 cache against 10,700-11,400 with F32.
    _mm256_zeroupper();
    to_f16_scalar(x + i, out + i, n - i);
}
const bool has_f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
#endif

void to_f16(const float* x, std::uint16_t* out, std::size_t n) noexcept {
#if defined(__x86_64__)
    if (has_f16c) return to_f16_f16c(x, out, n);
#endif
    to_f16_scalar(x, out, n);
}

/// Faults in every page of [p, p + bytes) for writing: one madvise where the
/// kernel has MADV_POPULATE_WRITE (5.14), else a write to each page.
void populate(std::byte* p, std::size_t bytes) {
#ifdef MADV_POPULATE_WRITE
    if (::madvise(p, bytes, MADV_POPULATE_WRITE) == 0) return;
    if (errno == ENOMEM) {
        throw std::runtime_error("kv_cache: " + std::to_string(bytes >> 20) +
                                 " MiB of KV cache could not be committed: not enough memory");
    }
    // EINVAL: an older kernel; touch the pages instead.
#endif
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    for (std::size_t i = 0; i < bytes; i += page) {
        *reinterpret_cast<volatile std::byte*>(p + i) = std::byte{0};
    }
}

} // namespace

std::size_t kv_cache::bytes_per_block(const model_config& config, std::size_t block_size, ggml_type type) noexcept {
    const std::size_t element = type == ggml_type::f32 ? sizeof(float) : sizeof(std::uint16_t);
    return config.n_layer * 2 * block_size * config.kv_dim() * element;
}

kv_cache::kv_cache(const model_config& config, std::size_t num_blocks, std::size_t block_size, ggml_type type)
    : m_num_blocks(num_blocks), m_block_size(block_size), m_kv_dim(config.kv_dim()), m_head_dim(config.head_dim),
      m_type(type), m_element(element_bytes(type)) {
    if (num_blocks == 0 || block_size == 0) {
        throw std::invalid_argument("kv_cache: block count and block size must be non-zero");
    }
    m_bytes = config.n_layer * num_blocks * 2 * block_size * m_kv_dim * m_element;
    // Zeroed (fresh anonymous pages): a slot is always written before it is
    // read, but zeroed memory keeps a bug from ever reading garbage that
    // differs between runs.
    void* p = ::mmap(nullptr, m_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    m_data = std::unique_ptr<std::byte[], unmap>(static_cast<std::byte*>(p), unmap{m_bytes});
#ifdef MADV_HUGEPAGE
    // Advice only: without THP (or with it off) the cache simply uses 4 KiB pages.
    (void)::madvise(p, m_bytes, MADV_HUGEPAGE);
#endif
    // Every page is faulted in now rather than when first written, as
    // engines commit their KV memory at start-up: a step never stalls on
    // page faults and zeroing (a first wave of requests would otherwise pay
    // for them), and memory that is not there shows at start-up, not
    // mid-request.
    populate(static_cast<std::byte*>(p), m_bytes);
}

void kv_cache::unmap::operator()(std::byte* p) const noexcept { ::munmap(p, bytes); }

void kv_cache::store(std::size_t layer, block_id block, std::size_t slot, const float* k, const float* v) noexcept {
    const std::size_t heads = m_kv_dim / m_head_dim;
    std::byte* kb = at(layer, block, 0);
    std::byte* vb = at(layer, block, 1);
    for (std::size_t h = 0; h < heads; ++h) {
        const std::size_t at_element = (h * m_block_size + slot) * m_head_dim;
        if (m_type == ggml_type::f32) {
            std::copy_n(k + h * m_head_dim, m_head_dim, reinterpret_cast<float*>(kb) + at_element);
            std::copy_n(v + h * m_head_dim, m_head_dim, reinterpret_cast<float*>(vb) + at_element);
        } else {
            to_f16(k + h * m_head_dim, reinterpret_cast<std::uint16_t*>(kb) + at_element, m_head_dim);
            to_f16(v + h * m_head_dim, reinterpret_cast<std::uint16_t*>(vb) + at_element, m_head_dim);
        }
    }
}

} // namespace weft::serve
