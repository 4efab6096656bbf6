/// \file
/// `model`: the weights of a Llama-family transformer, mapped from a GGUF
/// file, with its `model_config`.
///
/// Weight matrices are views into the file's memory mapping (never copied):
/// a `weight_matrix` is `rows` rows of `cols` elements of one `ggml_type`,
/// and `y = W x` means `y[r] = dot(row r, x)` (ggml's layout: dims[0] = cols).
/// Small vectors (norm weights, biases) are converted to float at load.
/// Tensor names follow llama.cpp ("token_embd.weight", "blk.3.attn_q.weight",
/// ...); when "output.weight" is absent the output projection is the token
/// embedding (tied). A missing or mis-shaped tensor, or one of a type weft
/// cannot compute with, is a `gguf_error` naming the file, the tensor and the
/// problem.
///
/// Lifetime: immutable once loaded; share it (std::shared_ptr<const model>)
/// among backends. The mapping lives as long as the model.
/// Threading: all members are const and safe to read from any thread.
#pragma once

#include <weft/serve/ggml_type.hpp>
#include <weft/serve/model_config.hpp>

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace weft::serve {

class gguf_file;

struct weight_matrix {
    ggml_type type = ggml_type::f32;
    const std::byte* data = nullptr;
    std::size_t rows = 0;
    std::size_t cols = 0;

    [[nodiscard]] std::size_t row_bytes() const noexcept { return serve::row_bytes(type, cols); }
    [[nodiscard]] std::size_t bytes() const noexcept { return rows * row_bytes(); }
    [[nodiscard]] const std::byte* row(std::size_t r) const noexcept { return data + r * row_bytes(); }
};

struct layer_weights {
    std::vector<float> attn_norm;         ///< [n_embd]
    weight_matrix wq, wk, wv, wo;         ///< [q_dim x n_embd], [kv_dim x n_embd] x2, [n_embd x q_dim]
    std::vector<float> bq, bk, bv;        ///< Qwen2 biases, else empty
    std::vector<float> ffn_norm;          ///< [n_embd]
    weight_matrix w_gate, w_up, w_down;   ///< [n_ff x n_embd] x2, [n_embd x n_ff]
};

struct load_options {
    /// Called while the weights are paged in: (bytes done, bytes total).
    std::function<void(std::size_t, std::size_t)> progress;
};

class model {
public:
    /// Maps and checks the GGUF file at `path` (see the file comment).
    static std::shared_ptr<const model> load(const std::filesystem::path& path, const load_options& opts = {});
    /// Reads an already opened file; the model keeps it.
    static std::shared_ptr<const model> from_gguf(std::shared_ptr<const gguf_file> file);

    model(const model&) = delete;
    model& operator=(const model&) = delete;
    ~model();

    [[nodiscard]] const model_config& config() const noexcept { return m_config; }
    [[nodiscard]] const gguf_file& file() const noexcept { return *m_file; }
    /// "general.name" when present, else the file's name.
    [[nodiscard]] const std::string& name() const noexcept { return m_name; }

    weight_matrix token_embd;             ///< [n_vocab x n_embd]
    std::vector<layer_weights> layers;
    std::vector<float> output_norm;       ///< [n_embd]
    weight_matrix output;                 ///< [n_vocab x n_embd]; token_embd when tied
    bool tied_output = false;

    /// Bytes of every matrix a decode step reads (all of them except the
    /// token embedding, which is only gathered, unless tied): the bandwidth
    /// floor of a step is this divided by memory bandwidth.
    [[nodiscard]] std::size_t step_weight_bytes() const noexcept;
    /// Parameter count (all tensors).
    [[nodiscard]] std::size_t parameter_count() const noexcept;

private:
    model() = default;
    std::shared_ptr<const gguf_file> m_file;
    model_config m_config;
    std::string m_name;
};

} // namespace weft::serve
