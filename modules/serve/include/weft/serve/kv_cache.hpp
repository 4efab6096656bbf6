/// \file
/// `kv_cache`: the paged key/value cache of the CPU backend.
///
/// Memory is split into `num_blocks` blocks of `block_size` token slots; a
/// sequence's block table (from the engine's block manager) maps its
/// position p to slot p % block_size of block table[p / block_size]. For each
/// layer and block, keys and values are stored head-major, as
/// [n_head_kv][block_size][head_dim] elements (F16 by default, or F32):
/// attention for one KV head reads each block as one contiguous run of
/// block_size * head_dim elements.
///
/// The memory is one anonymous mapping, zeroed, backed by transparent huge
/// pages where the kernel allows (madvise): attention reads many short runs
/// scattered over the cache, and with 4 KiB pages each run would be a TLB
/// miss of its own. Every page is committed by the constructor, so that no
/// step stalls on page faults later; the constructor throws
/// std::runtime_error when the kernel cannot provide the memory.
///
/// Lifetime: owns its memory. Threading: no synchronisation; the backend
/// writes a step's slots before any thread reads them, and the engine never
/// gives one block to two writers.
#pragma once

#include <weft/serve/ggml_type.hpp>
#include <weft/serve/model_config.hpp>
#include <weft/serve/token.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace weft::serve {

class kv_cache {
public:
    /// `type` is the element type: F16 (the default: half the memory and the
    /// bandwidth of F32, as llama.cpp's default cache) or F32. Anything else
    /// throws std::invalid_argument.
    kv_cache(const model_config& config, std::size_t num_blocks, std::size_t block_size,
             ggml_type type = ggml_type::f16);

    /// Bytes one block takes across all layers, keys and values.
    static std::size_t bytes_per_block(const model_config& config, std::size_t block_size,
                                       ggml_type type = ggml_type::f16) noexcept;

    [[nodiscard]] std::size_t num_blocks() const noexcept { return m_num_blocks; }
    [[nodiscard]] std::size_t block_size() const noexcept { return m_block_size; }
    [[nodiscard]] std::size_t kv_dim() const noexcept { return m_kv_dim; }
    [[nodiscard]] std::size_t head_dim() const noexcept { return m_head_dim; }
    [[nodiscard]] ggml_type type() const noexcept { return m_type; }

    /// Stores one token's keys and values ([kv_dim] floats each, heads
    /// consecutive) at `slot` of `block` in `layer`, converted to the
    /// cache's type (F16: rounded to nearest even).
    void store(std::size_t layer, block_id block, std::size_t slot, const float* k, const float* v) noexcept;
    [[nodiscard]] std::size_t bytes() const noexcept { return m_bytes; }

    /// Keys of `layer` in `block`: [n_head_kv][block_size][head_dim]
    /// elements of type(), as raw bytes; keys_as<float> or
    /// keys_as<std::uint16_t> (F16 bits) for typed access.
    [[nodiscard]] const std::byte* keys(std::size_t layer, block_id block) const noexcept { return at(layer, block, 0); }
    /// Values of `layer` in `block`, laid out as the keys.
    [[nodiscard]] const std::byte* values(std::size_t layer, block_id block) const noexcept {
        return at(layer, block, 1);
    }
    template <class T>
    [[nodiscard]] const T* keys_as(std::size_t layer, block_id block) const noexcept {
        return reinterpret_cast<const T*>(keys(layer, block));
    }
    template <class T>
    [[nodiscard]] const T* values_as(std::size_t layer, block_id block) const noexcept {
        return reinterpret_cast<const T*>(values(layer, block));
    }

private:
    std::byte* at(std::size_t layer, block_id block, std::size_t which) const noexcept {
        return m_data.get() + ((layer * m_num_blocks + block) * 2 + which) * m_block_size * m_kv_dim * m_element;
    }

    std::size_t m_num_blocks;
    std::size_t m_block_size;
    std::size_t m_kv_dim;
    std::size_t m_head_dim;
    ggml_type m_type;
    std::size_t m_element; // bytes per element
    std::size_t m_bytes;
    struct unmap {
        std::size_t bytes;
        void operator()(std::byte* p) const noexcept;
    };
    std::unique_ptr<std::byte[], unmap> m_data;
};

} // namespace weft::serve
