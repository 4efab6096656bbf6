#include <weft/serve/kv_cache.hpp>

#include <algorithm>
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
    // Zeroed: a slot is always written before it is read, but zeroed memory
    // keeps a bug from ever reading garbage that differs between runs.
    m_data = std::make_unique<float[]>(m_floats);
}

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
