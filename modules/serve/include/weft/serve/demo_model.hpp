/// \file
/// Demo models: Llama-architecture GGUF files with deterministic
/// pseudo-random weights and a byte-level BPE vocabulary trained on a
/// generated corpus, at named sizes. Their output is noise: they exist to
/// exercise and measure the engine without downloading anything.
///
/// Sizes: "tiny" (~0.2 M parameters, under 1 MB in F32), "small" (~26 M),
/// "1b" (~1.0 B, meant for a GPU). Types: F32, F16, BF16, Q8_0, and Q4_K
/// (Q4_K matrices with a Q6_K output, like llama.cpp's Q4_K_M; only for
/// sizes whose widths are multiples of 256).
///
/// The same size, type and seed always give the same file.
/// Threading: the functions may run concurrently on different paths.
#pragma once

#include <weft/serve/ggml_type.hpp>
#include <weft/serve/model_config.hpp>
#include <weft/serve/tokenizer.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace weft::serve {

class gguf_writer;

struct demo_model_spec {
    std::string name;
    model_config config; ///< n_vocab included
};

/// The named sizes, smallest first.
const std::vector<demo_model_spec>& demo_model_specs();
/// The spec called `name`; std::invalid_argument listing the names otherwise.
const demo_model_spec& demo_model(std::string_view name);

/// `ggml_type` from "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k"
/// (case-insensitive); std::invalid_argument otherwise.
ggml_type parse_weight_type(std::string_view name);

/// The byte-level BPE vocabulary of `vocab_size` tokens the demo models use
/// (deterministic; Llama-3 special tokens and chat template).
tokenizer_data demo_tokenizer(std::size_t vocab_size);

/// Fills `out` with a model of `config` (llama or qwen2 architecture, the
/// latter with Q/K/V biases) whose weights are pseudo-random from `seed`,
/// matrices stored as `type`, and the tokenizer `tok`. Tensors are generated
/// when `out` is written, so large models never sit in memory. With
/// `tie_output` there is no "output.weight" (the embedding is reused).
void add_random_model(gguf_writer& out, const model_config& config, const tokenizer_data& tok, ggml_type type,
                      std::uint64_t seed, std::string_view name, bool tie_output = false);

/// Writes the demo model `size` as `type` to `path` (atomically).
void write_demo_model(std::string_view size, ggml_type type, const std::filesystem::path& path,
                      std::uint64_t seed = 1);

/// The cache directory for demo models: $WEFT_CACHE_DIR, else
/// $XDG_CACHE_HOME/weft, else ~/.cache/weft, else ./.weft-cache.
std::filesystem::path default_cache_dir();

/// The path of demo model `size`/`type` in `cache_dir`, written first if it
/// is not there yet.
std::filesystem::path ensure_demo_model(std::string_view size, ggml_type type,
                                        const std::filesystem::path& cache_dir = default_cache_dir());

} // namespace weft::serve
