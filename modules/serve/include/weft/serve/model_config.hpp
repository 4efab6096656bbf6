/// \file
/// `model_config`: the hyper-parameters of a Llama-family transformer, as
/// read from a GGUF file's metadata under llama.cpp's key names
/// ("<arch>.block_count", "<arch>.embedding_length", ...).
///
/// Supported architectures: "llama" (Llama 2/3, Mistral, TinyLlama: RMSNorm,
/// RoPE on adjacent pairs, grouped-query attention, SwiGLU) and "qwen2" (the
/// same with Q/K/V biases and RoPE on split halves, "NeoX" order).
///
/// Threading: a plain value.
#pragma once

#include <cstddef>
#include <string>

namespace weft::serve {

class gguf_file;

/// How RoPE pairs the elements of a head: (2i, 2i+1) for Llama weights as
/// llama.cpp converts them, (i, i + d/2) for Qwen2.
enum class rope_style : unsigned char { adjacent, halves };

struct model_config {
    std::string architecture = "llama";
    std::size_t n_vocab = 0;
    std::size_t n_embd = 0;      ///< model width
    std::size_t n_layer = 0;
    std::size_t n_head = 0;
    std::size_t n_head_kv = 0;   ///< grouped-query attention: n_head is a multiple of it
    std::size_t head_dim = 0;    ///< usually n_embd / n_head
    std::size_t n_ff = 0;        ///< SwiGLU hidden width
    std::size_t n_ctx_train = 0; ///< longest context the model was trained for
    std::size_t rope_dim = 0;    ///< rotated elements per head (<= head_dim)
    float rope_freq_base = 10000.0f;
    float rms_eps = 1e-5f;
    rope_style rope = rope_style::adjacent;
    bool qkv_bias = false;       ///< Qwen2

    [[nodiscard]] std::size_t q_dim() const noexcept { return n_head * head_dim; }
    [[nodiscard]] std::size_t kv_dim() const noexcept { return n_head_kv * head_dim; }

    /// Reads and checks the hyper-parameters of `file`'s architecture. Throws
    /// gguf_error naming the file and the missing or inconsistent key, or the
    /// unsupported architecture.
    static model_config from_gguf(const gguf_file& file);

    /// Throws std::invalid_argument if the numbers do not describe a model
    /// weft can run (zero sizes, n_head not a multiple of n_head_kv, odd rope_dim...).
    void validate() const;
};

} // namespace weft::serve
