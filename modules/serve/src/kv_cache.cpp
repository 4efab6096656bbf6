#include <weft/serve/kv_cache.hpp>

#include <stdexcept>

namespace weft::serve {

std::size_t kv_cache::bytes_per_block(const model_config& config, std::size_t block_size) noexcept {
    return config.n_layer * 2 * block_size * config.kv_dim() * sizeof(float);
}

kv_cache::kv_cache(const model_config& config, std::size_t num_blocks, std::size_t block_size)
    : m_num_blocks(num_blocks), m_block_size(block_size), m_kv_dim(config.kv_dim()) {
    if (num_blocks == 0 || block_size == 0) {
        throw std::invalid_argument("kv_cache: block count and block size must be non-zero");
    }
    m_floats = config.n_layer * num_blocks * 2 * block_size * m_kv_dim;
    // Zeroed: a slot is always written before it is read, but zeroed memory
    // keeps a bug from ever reading garbage that differs between runs.
    m_data = std::make_unique<float[]>(m_floats);
}

} // namespace weft::serve
