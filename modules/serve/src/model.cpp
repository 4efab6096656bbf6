#include <weft/serve/gguf.hpp>
#include <weft/serve/model.hpp>
#include <weft/serve/quant.hpp>

#include <fmt/format.h>

namespace weft::serve {

namespace {

class loader {
public:
    loader(const gguf_file& f, const model_config& c) : m_file(f), m_config(c) {}

    /// The tensor `name` as a [rows x cols] matrix of a supported type.
    weight_matrix matrix(const std::string& name, std::size_t rows, std::size_t cols) const {
        const gguf_tensor& t = m_file.tensor(name);
        check_shape(t, rows, cols);
        const ggml_type_info info = type_info(t.type);
        if (!info.supported) {
            throw gguf_error(fmt::format("{}: tensor '{}' has type {}, which weft cannot compute with "
                                         "(supported: f32, f16, bf16, q8_0, q4_0, q4_K, q6_K)",
                                         m_file.name(), name, info.name));
        }
        return weight_matrix{t.type, t.data, rows, cols};
    }

    /// The vector `name` of n elements, converted to float.
    std::vector<float> vector(const std::string& name, std::size_t n) const {
        const gguf_tensor& t = m_file.tensor(name);
        if (t.elements() != n || (t.dims.size() > 1 && t.rows() != 1)) {
            throw gguf_error(fmt::format("{}: tensor '{}' has {} elements, expected a vector of {}", m_file.name(),
                                         name, t.elements(), n));
        }
        if (!type_info(t.type).supported) {
            throw gguf_error(fmt::format("{}: tensor '{}' has unsupported type {}", m_file.name(), name,
                                         type_info(t.type).name));
        }
        std::vector<float> out(n);
        dequantize_row(t.type, t.data, out.data(), n);
        return out;
    }

    std::vector<float> optional_vector(const std::string& name, std::size_t n) const {
        return m_file.find_tensor(name) != nullptr ? vector(name, n) : std::vector<float>{};
    }

private:
    void check_shape(const gguf_tensor& t, std::size_t rows, std::size_t cols) const {
        if (t.dims.size() != 2 || t.dims[0] != cols || t.dims[1] != rows) {
            std::string dims;
            for (std::uint64_t d : t.dims) dims += (dims.empty() ? "" : ", ") + std::to_string(d);
            throw gguf_error(fmt::format("{}: tensor '{}' has shape [{}], expected [{}, {}]", m_file.name(), t.name,
                                         dims, cols, rows));
        }
    }

    const gguf_file& m_file;
    const model_config& m_config;
};

} // namespace

model::~model() = default;

std::shared_ptr<const model> model::load(const std::filesystem::path& path, const load_options& opts) {
    auto file = std::make_shared<const gguf_file>(gguf_file::open(path));
    if (opts.progress) {
        file->prefault(opts.progress);
    }
    return from_gguf(std::move(file));
}

std::shared_ptr<const model> model::from_gguf(std::shared_ptr<const gguf_file> file) {
    std::shared_ptr<model> m(new model());
    const gguf_file& f = *file;
    m->m_file = std::move(file);
    m->m_config = model_config::from_gguf(f);
    const model_config& c = m->m_config;
    m->m_name = std::string(f.find_string("general.name").value_or(f.name()));

    const loader l(f, c);
    m->token_embd = l.matrix("token_embd.weight", c.n_vocab, c.n_embd);
    m->output_norm = l.vector("output_norm.weight", c.n_embd);
    if (f.find_tensor("output.weight") != nullptr) {
        m->output = l.matrix("output.weight", c.n_vocab, c.n_embd);
    } else {
        m->output = m->token_embd;
        m->tied_output = true;
    }
    m->layers.resize(c.n_layer);
    for (std::size_t i = 0; i < c.n_layer; ++i) {
        layer_weights& w = m->layers[i];
        const std::string p = fmt::format("blk.{}.", i);
        w.attn_norm = l.vector(p + "attn_norm.weight", c.n_embd);
        w.wq = l.matrix(p + "attn_q.weight", c.q_dim(), c.n_embd);
        w.wk = l.matrix(p + "attn_k.weight", c.kv_dim(), c.n_embd);
        w.wv = l.matrix(p + "attn_v.weight", c.kv_dim(), c.n_embd);
        w.wo = l.matrix(p + "attn_output.weight", c.n_embd, c.q_dim());
        w.bq = l.optional_vector(p + "attn_q.bias", c.q_dim());
        w.bk = l.optional_vector(p + "attn_k.bias", c.kv_dim());
        w.bv = l.optional_vector(p + "attn_v.bias", c.kv_dim());
        w.ffn_norm = l.vector(p + "ffn_norm.weight", c.n_embd);
        w.w_gate = l.matrix(p + "ffn_gate.weight", c.n_ff, c.n_embd);
        w.w_up = l.matrix(p + "ffn_up.weight", c.n_ff, c.n_embd);
        w.w_down = l.matrix(p + "ffn_down.weight", c.n_embd, c.n_ff);
    }
    return m;
}

std::size_t model::step_weight_bytes() const noexcept {
    std::size_t bytes = output.bytes();
    for (const layer_weights& w : layers) {
        bytes += w.wq.bytes() + w.wk.bytes() + w.wv.bytes() + w.wo.bytes() + w.w_gate.bytes() + w.w_up.bytes() +
                 w.w_down.bytes();
    }
    return bytes;
}

std::size_t model::parameter_count() const noexcept {
    std::size_t n = 0;
    for (const gguf_tensor& t : m_file->tensors()) n += static_cast<std::size_t>(t.elements());
    return n;
}

} // namespace weft::serve
