#include <weft/serve/bpe_trainer.hpp>
#include <weft/serve/demo_model.hpp>
#include <weft/serve/gguf.hpp>
#include <weft/serve/quant.hpp>
#include <weft/serve/tokenizer_gguf.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>

namespace weft::serve {

namespace {

model_config make_config(std::size_t vocab, std::size_t embd, std::size_t layers, std::size_t heads,
                         std::size_t kv_heads, std::size_t ff) {
    model_config c;
    c.architecture = "llama";
    c.n_vocab = vocab;
    c.n_embd = embd;
    c.n_layer = layers;
    c.n_head = heads;
    c.n_head_kv = kv_heads;
    c.head_dim = embd / heads;
    c.n_ff = ff;
    c.n_ctx_train = 4096;
    c.rope_dim = c.head_dim;
    c.rope_freq_base = 500000.0f;
    c.rms_eps = 1e-5f;
    return c;
}

/// splitmix64: a fixed generator, so a seed gives the same weights everywhere.
class splitmix64 {
public:
    explicit splitmix64(std::uint64_t seed) noexcept : m_state(seed) {}
    std::uint64_t next() noexcept {
        std::uint64_t z = (m_state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    /// Uniform in [-1, 1).
    float uniform() noexcept { return static_cast<float>(static_cast<double>(next() >> 11) * 0x1.0p-52 - 1.0); }

private:
    std::uint64_t m_state;
};

std::uint64_t name_hash(std::string_view s) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull; // FNV-1a
    for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
    return h;
}

const char* const llama3_chat_template =
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/// Adds tensor `name` of [rows x cols] (rows == 1: a vector), values
/// uniform in [-scale, scale) around `center`, stored as `type`.
void add_tensor(gguf_writer& out, const std::string& name, std::size_t rows, std::size_t cols, ggml_type type,
                std::uint64_t seed, float scale, float center = 0.0f) {
    std::vector<std::uint64_t> dims{cols};
    if (rows > 1) dims.push_back(rows);
    const std::uint64_t tensor_seed = seed ^ name_hash(name);
    out.add_tensor(name, type, dims, [=](std::span<std::byte> data) {
        splitmix64 rng(tensor_seed);
        std::vector<float> row(cols);
        const std::size_t stride = row_bytes(type, cols);
        for (std::size_t r = 0; r < rows; ++r) {
            for (float& v : row) v = center + scale * rng.uniform();
            quantize_row(type, row.data(), data.data() + r * stride, cols);
        }
    });
}

} // namespace

const std::vector<demo_model_spec>& demo_model_specs() {
    static const std::vector<demo_model_spec> specs = {
        {"tiny", make_config(512, 64, 2, 4, 2, 192)},
        {"small", make_config(4096, 512, 8, 8, 4, 1280)},
        {"1b", make_config(8192, 2048, 16, 32, 8, 8192)},
    };
    return specs;
}

const demo_model_spec& demo_model(std::string_view name) {
    for (const demo_model_spec& s : demo_model_specs()) {
        if (s.name == name) return s;
    }
    throw std::invalid_argument(fmt::format("unknown demo model size '{}' (tiny, small, 1b)", name));
}

ggml_type parse_weight_type(std::string_view name) {
    std::string n(name);
    std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (n == "f32") return ggml_type::f32;
    if (n == "f16") return ggml_type::f16;
    if (n == "bf16") return ggml_type::bf16;
    if (n == "q8_0") return ggml_type::q8_0;
    if (n == "q4_0") return ggml_type::q4_0;
    if (n == "q4_k" || n == "q4_k_m") return ggml_type::q4_k;
    throw std::invalid_argument(fmt::format("unknown weight type '{}' (f32, f16, bf16, q8_0, q4_0, q4_k)", name));
}

tokenizer_data demo_tokenizer(std::size_t vocab_size) {
    // Training is deterministic but not free: keep each vocabulary once per process.
    static std::mutex mutex;
    static std::map<std::size_t, tokenizer_data> cache;
    std::lock_guard lock(mutex);
    if (auto it = cache.find(vocab_size); it != cache.end()) return it->second;
    // About 256 bytes of text per token to learn: enough for stable merges.
    const std::string corpus = demo_corpus(std::clamp<std::size_t>(vocab_size * 256, 64 * 1024, 2 * 1024 * 1024), 42);
    tokenizer_data d = train_byte_bpe(corpus, vocab_size, "llama-bpe");
    d.chat_template = llama3_chat_template;
    return cache.emplace(vocab_size, std::move(d)).first->second;
}

void add_random_model(gguf_writer& out, const model_config& c, const tokenizer_data& tok, ggml_type type,
                      std::uint64_t seed, std::string_view name, bool tie_output) {
    c.validate();
    if (tok.tokens.size() != c.n_vocab) {
        throw std::invalid_argument(fmt::format("tokenizer has {} tokens, the model {}", tok.tokens.size(), c.n_vocab));
    }
    const std::size_t block = type_info(type).block_size;
    if (block == 0 || c.n_embd % block != 0 || c.n_ff % block != 0 || c.q_dim() % block != 0) {
        throw std::invalid_argument(fmt::format("type {} needs widths that are multiples of {} (embd {}, ff {})",
                                                type_info(type).name, block, c.n_embd, c.n_ff));
    }
    const std::string& a = c.architecture;
    out.set_string("general.architecture", a);
    out.set_string("general.name", std::string(name));
    out.set_string("general.description", "weft demo model: deterministic pseudo-random weights, not a trained model");
    out.set_u32("general.file_type", static_cast<std::uint32_t>(type));
    out.set_u32(a + ".block_count", static_cast<std::uint32_t>(c.n_layer));
    out.set_u32(a + ".embedding_length", static_cast<std::uint32_t>(c.n_embd));
    out.set_u32(a + ".feed_forward_length", static_cast<std::uint32_t>(c.n_ff));
    out.set_u32(a + ".attention.head_count", static_cast<std::uint32_t>(c.n_head));
    out.set_u32(a + ".attention.head_count_kv", static_cast<std::uint32_t>(c.n_head_kv));
    out.set_u32(a + ".context_length", static_cast<std::uint32_t>(c.n_ctx_train));
    out.set_u32(a + ".rope.dimension_count", static_cast<std::uint32_t>(c.rope_dim));
    out.set_f32(a + ".rope.freq_base", c.rope_freq_base);
    out.set_f32(a + ".attention.layer_norm_rms_epsilon", c.rms_eps);
    out.set_u32(a + ".vocab_size", static_cast<std::uint32_t>(c.n_vocab));
    write_tokenizer(out, tok);

    // Scales keep activations near unit size through the layers: a matrix
    // with k inputs gets uniform weights of variance 1/k.
    auto mat_scale = [](std::size_t k) { return static_cast<float>(std::sqrt(3.0 / static_cast<double>(k))); };
    // Q4_K_M keeps the output projection at higher precision.
    const ggml_type out_type = type == ggml_type::q4_k ? ggml_type::q6_k : type;
    add_tensor(out, "token_embd.weight", c.n_vocab, c.n_embd, type, seed, 1.0f);
    add_tensor(out, "output_norm.weight", 1, c.n_embd, ggml_type::f32, seed, 0.1f, 1.0f);
    if (!tie_output) {
        add_tensor(out, "output.weight", c.n_vocab, c.n_embd, out_type, seed, 2.0f * mat_scale(c.n_embd));
    }
    for (std::size_t l = 0; l < c.n_layer; ++l) {
        const std::string p = fmt::format("blk.{}.", l);
        add_tensor(out, p + "attn_norm.weight", 1, c.n_embd, ggml_type::f32, seed, 0.1f, 1.0f);
        add_tensor(out, p + "attn_q.weight", c.q_dim(), c.n_embd, type, seed, mat_scale(c.n_embd));
        add_tensor(out, p + "attn_k.weight", c.kv_dim(), c.n_embd, type, seed, mat_scale(c.n_embd));
        add_tensor(out, p + "attn_v.weight", c.kv_dim(), c.n_embd, type, seed, mat_scale(c.n_embd));
        if (c.qkv_bias) {
            add_tensor(out, p + "attn_q.bias", 1, c.q_dim(), ggml_type::f32, seed, 0.1f);
            add_tensor(out, p + "attn_k.bias", 1, c.kv_dim(), ggml_type::f32, seed, 0.1f);
            add_tensor(out, p + "attn_v.bias", 1, c.kv_dim(), ggml_type::f32, seed, 0.1f);
        }
        add_tensor(out, p + "attn_output.weight", c.n_embd, c.q_dim(), type, seed, mat_scale(c.q_dim()));
        add_tensor(out, p + "ffn_norm.weight", 1, c.n_embd, ggml_type::f32, seed, 0.1f, 1.0f);
        add_tensor(out, p + "ffn_gate.weight", c.n_ff, c.n_embd, type, seed, mat_scale(c.n_embd));
        add_tensor(out, p + "ffn_up.weight", c.n_ff, c.n_embd, type, seed, mat_scale(c.n_embd));
        add_tensor(out, p + "ffn_down.weight", c.n_embd, c.n_ff, type, seed, mat_scale(c.n_ff));
    }
}

void write_demo_model(std::string_view size, ggml_type type, const std::filesystem::path& path, std::uint64_t seed) {
    const demo_model_spec& spec = demo_model(size);
    gguf_writer out;
    add_random_model(out, spec.config, demo_tokenizer(spec.config.n_vocab), type, seed,
                     fmt::format("weft-demo-{} ({}, random weights)", spec.name, type_info(type).name));
    out.write(path);
}

std::filesystem::path default_cache_dir() {
    if (const char* d = std::getenv("WEFT_CACHE_DIR"); d != nullptr && *d != '\0') return d;
    if (const char* d = std::getenv("XDG_CACHE_HOME"); d != nullptr && *d != '\0') return std::filesystem::path(d) / "weft";
    if (const char* d = std::getenv("HOME"); d != nullptr && *d != '\0') return std::filesystem::path(d) / ".cache" / "weft";
    return ".weft-cache";
}

std::filesystem::path ensure_demo_model(std::string_view size, ggml_type type, const std::filesystem::path& cache_dir) {
    const demo_model_spec& spec = demo_model(size);
    const std::filesystem::path path = cache_dir / fmt::format("weft-demo-{}-{}.gguf", spec.name, type_info(type).name);
    if (!std::filesystem::exists(path)) {
        std::filesystem::create_directories(cache_dir);
        write_demo_model(size, type, path);
    }
    return path;
}

} // namespace weft::serve
