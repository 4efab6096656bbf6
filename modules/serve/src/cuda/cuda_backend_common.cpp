// Parts of cuda_backend that need no CUDA: built with and without it.
#include <weft/serve/cuda_backend.hpp>

namespace weft::serve {

std::size_t cuda_backend::kv_bytes_per_block(const model_config& c, std::size_t block_size, cuda_precision p) noexcept {
    const std::size_t element = p == cuda_precision::bf16 ? 2 : 4;
    return c.n_layer * 2 * block_size * c.kv_dim() * element;
}

} // namespace weft::serve
