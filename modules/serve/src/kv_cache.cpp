#include <weft/serve/kv_cache.hpp>

#include <sys/mman.h>

#include <algorithm>
#include <new>
#include <stdexcept>

namespace weft::serve {

std::size_t kv_cache::bytes_per_block(const model_config& config, std::size_t block_size) noexcept {
    return config.n_layer * 2 * block_size * config.kv_dim() * sizeof(float);
}

kv_cache::kv_cache(const model_config& config, std::size_t num_blocks, std::size_t block_size)
    : m_num_blocks(num_blocks), m_block_size(block_size), m_kv_dim(config.kv_dim()), m_head_dim(config.head_dim) {
    if (num_blocks == 0 || block_size == 0) {
        throw std::invalid_argument("kv_cache: block count and block size must be non-zero");
    }
    m_floats = config.n_layer * num_blocks * 2 * block_size * m_kv_dim;
    // Zeroed (fresh anonymous pages): a slot is always written before it is
    // read, but zeroed memory keeps a bug from ever reading garbage that
    // differs between runs. Pages are only touched when first written.
    const std::size_t bytes = m_floats * sizeof(float);
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    // Advice only: without THP (or with it off) the cache simply uses 4 KiB pages.
    (void)::madvise(p, bytes, MADV_HUGEPAGE);
#endif
    m_data = std::unique_ptr<float[], unmap>(static_cast<float*>(p), unmap{bytes});
}

void kv_cache::unmap::operator()(float* p) const noexcept { ::munmap(p, bytes); }

void kv_cache::store(std::size_t layer, block_id block, std::size_t slot, const float* k, const float* v) noexcept {
    float* kb = keys(layer, block);
    float* vb = values(layer, block);
    const std::size_t heads = m_kv_dim / m_head_dim;
    for (std::size_t h = 0; h < heads; ++h) {
        const std::size_t at = (h * m_block_size + slot) * m_head_dim;
        std::copy_n(k + h * m_head_dim, m_head_dim, kb + at);
        std::copy_n(v + h * m_head_dim, m_head_dim, vb + at);
    }
}

} // namespace weft::serve
