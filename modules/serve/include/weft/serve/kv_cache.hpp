/// \file
/// `kv_cache`: the paged key/value cache of the CPU backend.
///
/// Memory is split into `num_blocks` blocks of `block_size` token slots; a
/// sequence's block table (from the engine's block manager) maps its
/// position p to slot p % block_size of block table[p / block_size]. For each
/// layer and block, keys and values are stored head-major, as
/// [n_head_kv][block_size][head_dim] floats: attention for one KV head reads
/// each block as one contiguous run of block_size * head_dim floats.
///
/// The memory is one anonymous mapping, zero until written and backed by
/// transparent huge pages where the kernel allows (madvise): attention reads
/// many short runs scattered over the cache, and with 4 KiB pages each run
/// would be a TLB miss of its own.
///
/// Lifetime: owns its memory. Threading: no synchronisation; the backend
/// writes a step's slots before any thread reads them, and the engine never
/// gives one block to two writers.
#pragma once

#include <weft/serve/model_config.hpp>
#include <weft/serve/token.hpp>

#include <cstddef>
#include <memory>

namespace weft::serve {

class kv_cache {
public:
    kv_cache(const model_config& config, std::size_t num_blocks, std::size_t block_size);

    /// Bytes one block takes across all layers, keys and values.
    static std::size_t bytes_per_block(const model_config& config, std::size_t block_size) noexcept;

    [[nodiscard]] std::size_t num_blocks() const noexcept { return m_num_blocks; }
    [[nodiscard]] std::size_t block_size() const noexcept { return m_block_size; }
    [[nodiscard]] std::size_t kv_dim() const noexcept { return m_kv_dim; }
    [[nodiscard]] std::size_t head_dim() const noexcept { return m_head_dim; }

    /// Stores one token's keys and values ([kv_dim] each, heads
    /// consecutive) at `slot` of `block` in `layer`.
    void store(std::size_t layer, block_id block, std::size_t slot, const float* k, const float* v) noexcept;
    [[nodiscard]] std::size_t bytes() const noexcept { return m_floats * sizeof(float); }

    /// Keys of `layer` in `block`: [n_head_kv][block_size][head_dim].
    [[nodiscard]] float* keys(std::size_t layer, block_id block) noexcept { return slot(layer, block, 0); }
    [[nodiscard]] const float* keys(std::size_t layer, block_id block) const noexcept {
        return const_cast<kv_cache*>(this)->slot(layer, block, 0);
    }
    /// Values of `layer` in `block`: [n_head_kv][block_size][head_dim].
    [[nodiscard]] float* values(std::size_t layer, block_id block) noexcept { return slot(layer, block, 1); }
    [[nodiscard]] const float* values(std::size_t layer, block_id block) const noexcept {
        return const_cast<kv_cache*>(this)->slot(layer, block, 1);
    }

private:
    float* slot(std::size_t layer, block_id block, std::size_t which) noexcept {
        return m_data.get() + ((layer * m_num_blocks + block) * 2 + which) * m_block_size * m_kv_dim;
    }

    std::size_t m_num_blocks;
    std::size_t m_block_size;
    std::size_t m_kv_dim;
    std::size_t m_head_dim;
    std::size_t m_floats;
    struct unmap {
        std::size_t bytes;
        void operator()(float* p) const noexcept;
    };
    std::unique_ptr<float[], unmap> m_data;
};

} // namespace weft::serve
