#include <weft/serve/gguf.hpp>
#include <weft/serve/model_config.hpp>

#include <fmt/format.h>

#include <stdexcept>

namespace weft::serve {

namespace {

std::size_t required_uint(const gguf_file& f, const std::string& key) {
    const auto v = f.find_uint(key);
    if (!v) {
        throw gguf_error(fmt::format("{}: missing key '{}'", f.name(), key));
    }
    return static_cast<std::size_t>(*v);
}

} // namespace

model_config model_config::from_gguf(const gguf_file& f) {
    model_config c;
    const std::string arch(f.architecture());
    if (arch != "llama" && arch != "qwen2") {
        throw gguf_error(fmt::format("{}: unsupported architecture '{}' (weft runs llama and qwen2)", f.name(), arch));
    }
    c.architecture = arch;
    c.rope = arch == "qwen2" ? rope_style::halves : rope_style::adjacent;
    c.qkv_bias = arch == "qwen2";
    const std::string p = arch + ".";
    c.n_layer = required_uint(f, p + "block_count");
    c.n_embd = required_uint(f, p + "embedding_length");
    c.n_ff = required_uint(f, p + "feed_forward_length");
    c.n_head = required_uint(f, p + "attention.head_count");
    c.n_head_kv = static_cast<std::size_t>(f.find_uint(p + "attention.head_count_kv").value_or(c.n_head));
    c.n_ctx_train = static_cast<std::size_t>(f.find_uint(p + "context_length").value_or(2048));
    if (c.n_head == 0) {
        throw gguf_error(fmt::format("{}: '{}attention.head_count' is 0", f.name(), p));
    }
    c.head_dim = static_cast<std::size_t>(f.find_uint(p + "attention.key_length").value_or(c.n_embd / c.n_head));
    if (const auto vlen = f.find_uint(p + "attention.value_length"); vlen && *vlen != c.head_dim) {
        throw gguf_error(fmt::format("{}: key_length {} != value_length {} is not supported", f.name(), c.head_dim, *vlen));
    }
    c.rope_dim = static_cast<std::size_t>(f.find_uint(p + "rope.dimension_count").value_or(c.head_dim));
    c.rope_freq_base = static_cast<float>(f.find_float(p + "rope.freq_base").value_or(10000.0));
    c.rms_eps = static_cast<float>(f.find_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-5));
    if (const gguf_tensor* embd = f.find_tensor("token_embd.weight"); embd != nullptr && embd->dims.size() == 2) {
        c.n_vocab = static_cast<std::size_t>(embd->dims[1]);
    } else if (const auto v = f.find_uint(p + "vocab_size")) {
        c.n_vocab = static_cast<std::size_t>(*v);
    }
    try {
        c.validate();
    } catch (const std::invalid_argument& e) {
        throw gguf_error(fmt::format("{}: {}", f.name(), e.what()));
    }
    return c;
}

void model_config::validate() const {
    auto fail = [](const std::string& what) { throw std::invalid_argument(what); };
    if (n_vocab == 0) fail("vocabulary size is 0 (no token_embd.weight?)");
    if (n_embd == 0 || n_layer == 0 || n_ff == 0 || n_head == 0 || n_head_kv == 0 || head_dim == 0) {
        fail(fmt::format("model sizes must be non-zero (embd {}, layers {}, ff {}, heads {}/{}, head_dim {})", n_embd,
                         n_layer, n_ff, n_head, n_head_kv, head_dim));
    }
    if (n_head % n_head_kv != 0) {
        fail(fmt::format("head_count {} is not a multiple of head_count_kv {}", n_head, n_head_kv));
    }
    if (rope_dim == 0 || rope_dim > head_dim || rope_dim % 2 != 0) {
        fail(fmt::format("rope dimension {} must be even and at most the head size {}", rope_dim, head_dim));
    }
    if (!(rope_freq_base > 0.0f) || !(rms_eps > 0.0f)) {
        fail("rope.freq_base and layer_norm_rms_epsilon must be positive");
    }
    // Guards against absurd metadata before anything is allocated from it.
    constexpr std::size_t limit = std::size_t{1} << 24;
    if (n_vocab > limit || n_embd > limit || n_ff > limit || n_layer > 4096 || n_head > 4096 || head_dim > 4096) {
        fail("model sizes are implausibly large");
    }
}

} // namespace weft::serve
