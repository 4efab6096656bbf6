#include "cuda/cuda_forward.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace weft::serve::cuda {

namespace {

// cuBLAS's recommended workspace on Hopper; set explicitly so that it never
// allocates while a graph is being captured.
constexpr std::size_t cublas_workspace_bytes = std::size_t{32} << 20;

std::size_t ceil_div(std::size_t a, std::size_t b) noexcept { return (a + b - 1) / b; }

} // namespace

cuda_forward::cuda_forward(std::shared_ptr<const model> m, const cuda_backend_options& opts)
    : m_model(std::move(m)), m_config(m_model->config()),
      m_type(opts.precision == cuda_precision::bf16 ? dtype::bf16 : dtype::f32), m_device(opts.device),
      m_block_size(opts.kv_block_size) {
    const model_config& c = m_config;
    if (m_block_size == 0) throw std::invalid_argument("kv_block_size must be at least 1");
    if (c.head_dim == 0 || c.head_dim > static_cast<std::size_t>(max_head_dim)) {
        throw std::invalid_argument(
            fmt::format("head_dim {} is outside what the CUDA attention kernel takes (1 to {})", c.head_dim, max_head_dim));
    }
    if (c.rope_dim == 0 || c.rope_dim % 2 != 0 || c.rope_dim > c.head_dim) {
        throw std::invalid_argument(fmt::format("rope dimension {} must be even, non-zero and at most head_dim {}",
                                                c.rope_dim, c.head_dim));
    }
    if (!(opts.kv_memory_fraction > 0.0 && opts.kv_memory_fraction <= 1.0)) {
        throw std::invalid_argument("kv_memory_fraction must be in (0, 1]");
    }

    int count = 0;
    const cudaError_t found = cudaGetDeviceCount(&count);
    if (found != cudaSuccess) {
        cudaGetLastError(); // not sticky: clear it
        check(found, "no usable CUDA device: cudaGetDeviceCount");
    }
    if (opts.device < 0 || opts.device >= count) {
        throw cuda_error(fmt::format("CUDA device {} does not exist ({} present)", opts.device, count),
                         static_cast<int>(cudaErrorInvalidDevice));
    }
    check(cudaSetDevice(m_device), "cudaSetDevice");
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, m_device), "cudaGetDeviceProperties");
    m_device_name = fmt::format("{} sm_{}{}", prop.name, prop.major, prop.minor);

    for (std::size_t s : opts.graph_batch_sizes) {
        if (s > 0) m_graph_sizes.push_back(s);
    }
    std::sort(m_graph_sizes.begin(), m_graph_sizes.end());
    m_graph_sizes.erase(std::unique(m_graph_sizes.begin(), m_graph_sizes.end()), m_graph_sizes.end());

    try {
        check(cudaStreamCreateWithFlags(&m_stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
        check(cublasCreate(&m_cublas), "cublasCreate");
        check(cublasSetStream(m_cublas, m_stream), "cublasSetStream");
        check(cublasSetMathMode(m_cublas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
        m_cublas_workspace = device_buffer(cublas_workspace_bytes, "cudaMalloc (cuBLAS workspace)");
        check(cublasSetWorkspace(m_cublas, m_cublas_workspace.get(), m_cublas_workspace.bytes()), "cublasSetWorkspace");
        attention_prepare(m_type, static_cast<int>(c.n_head / c.n_head_kv), static_cast<int>(c.head_dim));

        m_weights = std::make_unique<device_weights>(*m_model, m_type);

        // RoPE frequencies exactly as the CPU's rope_table computes them.
        const std::size_t half = c.rope_dim / 2;
        std::vector<double> inv_freq(half);
        for (std::size_t i = 0; i < half; ++i) {
            inv_freq[i] = std::pow(static_cast<double>(c.rope_freq_base),
                                   -2.0 * static_cast<double>(i) / static_cast<double>(2 * half));
        }
        m_inv_freq = device_buffer(half * sizeof(double), "cudaMalloc (rope)");
        check(cudaMemcpy(m_inv_freq.get(), inv_freq.data(), half * sizeof(double), cudaMemcpyHostToDevice),
              "cudaMemcpy (rope)");

        capacity initial;
        initial.tokens = std::max<std::size_t>(256, m_graph_sizes.empty() ? 0 : m_graph_sizes.back());
        initial.rows = initial.tokens;
        initial.parts = std::max<std::size_t>(1, ceil_div(std::max<std::size_t>(c.n_ctx_train, 1), attention_partition));
        initial.tables = 4096;
        allocate(initial);

        // The KV cache, plus one block that padding tokens of a graph write to.
        const std::size_t per_block = cuda_backend::kv_bytes_per_block(c, m_block_size, opts.precision);
        m_kv_blocks = opts.kv_blocks;
        if (m_kv_blocks == 0) {
            std::size_t free = 0, total = 0;
            check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
            const auto budget = static_cast<std::size_t>(static_cast<double>(free) * opts.kv_memory_fraction);
            m_kv_blocks = budget / per_block > 1 ? budget / per_block - 1 : 0;
            if (m_kv_blocks == 0) {
                throw cuda_error(fmt::format("no device memory left for a KV cache ({:.1f} MiB free, {} bytes per block)",
                                             static_cast<double>(free) / (1 << 20), per_block),
                                 static_cast<int>(cudaErrorMemoryAllocation));
            }
        }
        m_kv = device_buffer((m_kv_blocks + 1) * per_block, "cudaMalloc (KV cache)");
        check(cudaMemset(m_kv.get(), 0, m_kv.bytes()), "cudaMemset (KV cache)");
        m_kv_layer_elems = (m_kv_blocks + 1) * 2 * m_block_size * c.kv_dim();
        // The uploads and the memset ran on the legacy default stream, which
        // the (non-blocking) step stream does not wait for: finish them here.
        check(cudaDeviceSynchronize(), "cudaDeviceSynchronize (after loading)");
    } catch (...) {
        release();
        throw;
    }
}

cuda_forward::~cuda_forward() { release(); }

void cuda_forward::release() noexcept {
    if (m_stream != nullptr) {
        cudaSetDevice(m_device);
        cudaStreamSynchronize(m_stream); // teardown, not the serving path
    }
    drop_graphs();
    if (m_cublas != nullptr) cublasDestroy(m_cublas);
    if (m_stream != nullptr) cudaStreamDestroy(m_stream);
    m_cublas = nullptr;
    m_stream = nullptr;
}

void cuda_forward::drop_graphs() noexcept {
    for (auto& [key, exec] : m_graphs) cudaGraphExecDestroy(exec);
    m_graphs.clear();
}

void cuda_forward::allocate(const capacity& cap) {
    // The previous step has completed (one step at a time), so this returns
    // at once; it guards the buffers freed below all the same.
    if (m_stream != nullptr) check(cudaStreamSynchronize(m_stream), "cudaStreamSynchronize (reallocation)");
    drop_graphs();
    const model_config& c = m_config;
    const std::size_t elt = dtype_size(m_type);
    const std::size_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, V = c.n_vocab;
    const std::size_t meta_bytes = (4 * cap.tokens + cap.tables) * sizeof(int);
    m_meta = device_buffer(meta_bytes, "cudaMalloc (step metadata)");
    m_meta_host = pinned_buffer(meta_bytes, "cudaMallocHost (step metadata)");
    m_x = device_buffer(cap.tokens * E * sizeof(float), "cudaMalloc (activations)");
    m_xn = device_buffer(std::max(cap.tokens, cap.rows) * E * elt, "cudaMalloc (activations)");
    m_qkv = device_buffer(cap.tokens * (Q + 2 * KV) * sizeof(float), "cudaMalloc (activations)");
    m_att = device_buffer(cap.tokens * Q * elt, "cudaMalloc (activations)");
    m_gate_up = device_buffer(cap.tokens * 2 * F * sizeof(float), "cudaMalloc (activations)");
    m_h = device_buffer(cap.tokens * F * elt, "cudaMalloc (activations)");
    m_partial = device_buffer(attention_scratch_floats(cap.tokens, c.n_head, c.head_dim, cap.parts) * sizeof(float),
                              "cudaMalloc (attention scratch)");
    m_logits = device_buffer(cap.rows * V * sizeof(float), "cudaMalloc (logits)");
    m_argmax = device_buffer(cap.rows * sizeof(int), "cudaMalloc (argmax)");
    m_logits_host = pinned_buffer(cap.rows * V * sizeof(float), "cudaMallocHost (logits)");
    m_argmax_host = pinned_buffer(cap.rows * sizeof(int), "cudaMallocHost (argmax)");
    m_cap = cap;
}

void cuda_forward::ensure_capacity(const capacity& need) {
    if (need.tokens <= m_cap.tokens && need.rows <= m_cap.rows && need.parts <= m_cap.parts &&
        need.tables <= m_cap.tables) {
        return;
    }
    auto grow = [](std::size_t want, std::size_t have) { return want <= have ? have : std::max(want, 2 * have); };
    capacity cap;
    cap.tokens = grow(need.tokens, m_cap.tokens);
    cap.rows = grow(need.rows, m_cap.rows);
    cap.parts = grow(need.parts, m_cap.parts);
    cap.tables = grow(need.tables, m_cap.tables);
    allocate(cap);
}

step_meta cuda_forward::meta() const noexcept {
    const int* base = m_meta.as<const int>();
    step_meta sm;
    sm.tokens = base;
    sm.positions = base + m_cap.tokens;
    sm.table_offset = base + 2 * m_cap.tokens;
    sm.logit_rows = base + 3 * m_cap.tokens;
    sm.tables = base + 4 * m_cap.tokens;
    return sm;
}

void* cuda_forward::kv_layer(std::size_t layer) const noexcept {
    return m_kv.as<std::byte>() + layer * m_kv_layer_elems * dtype_size(m_type);
}

void cuda_forward::validate(const batch& b) const {
    const std::size_t bs = m_block_size;
    for (const batch_chunk& c : b.chunks) {
        if (c.tokens.empty()) {
            throw std::invalid_argument(fmt::format("sequence {}: empty chunk", c.id));
        }
        const std::size_t end = c.start + c.tokens.size();
        if (end > static_cast<std::size_t>(INT_MAX)) {
            throw std::invalid_argument(fmt::format("sequence {}: position {} is too large", c.id, end - 1));
        }
        if (c.blocks.size() * bs < end) {
            throw std::invalid_argument(
                fmt::format("sequence {}: {} blocks cannot hold {} positions", c.id, c.blocks.size(), end));
        }
        for (std::size_t i = 0; i < ceil_div(end, bs); ++i) {
            if (c.blocks[i] >= m_kv_blocks) {
                throw std::invalid_argument(fmt::format("sequence {}: block {} out of range", c.id, c.blocks[i]));
            }
        }
        for (token_id t : c.tokens) {
            if (t < 0 || static_cast<std::size_t>(t) >= m_config.n_vocab) {
                throw std::invalid_argument(fmt::format("sequence {}: token {} outside the vocabulary", c.id, t));
            }
        }
    }
}

std::size_t cuda_forward::enqueue(const batch& b, bool argmax_only) {
    validate(b);
    check(cudaSetDevice(m_device), "cudaSetDevice");
    if (m_unfinished) {
        // A step failed part-way: what it queued may still read the pinned
        // metadata about to be overwritten. An error path, not the serving path.
        check(cudaStreamSynchronize(m_stream), "cudaStreamSynchronize (after a failed step)");
        m_unfinished = false;
    }
    const std::size_t T = b.num_tokens();
    const std::size_t S = b.num_logits();
    if (T == 0) return 0;
    const std::size_t bs = m_block_size;

    // A pure decode batch (one token per sequence, each wanting logits)
    // replays the graph of the next captured size, padded.
    bool decode = !m_graph_sizes.empty() && T <= m_graph_sizes.back();
    for (const batch_chunk& c : b.chunks) decode = decode && c.tokens.size() == 1 && c.logits == 1;
    const std::size_t run = decode ? *std::lower_bound(m_graph_sizes.begin(), m_graph_sizes.end(), T) : T;

    std::size_t longest = 0, tables = 0;
    for (const batch_chunk& c : b.chunks) {
        const std::size_t end = c.start + c.tokens.size();
        longest = std::max(longest, end);
        tables += ceil_div(end, bs);
    }
    if (run > T) tables += 1; // the padding block
    std::size_t parts = ceil_div(longest, attention_partition);
    if (decode) {
        // Graphs fix the grid: one per power-of-two number of partitions.
        std::size_t bucket = 1;
        while (bucket < parts) bucket *= 2;
        parts = bucket;
    }
    const std::size_t rows = decode ? run : S;
    ensure_capacity({run, std::max<std::size_t>(rows, 1), parts, tables});

    // Metadata, laid out as meta() reads it.
    int* tok = m_meta_host.as<int>();
    int* pos = tok + m_cap.tokens;
    int* off = tok + 2 * m_cap.tokens;
    int* logit_rows = tok + 3 * m_cap.tokens;
    int* table = tok + 4 * m_cap.tokens;
    std::size_t t = 0, s = 0, n_tables = 0;
    for (const batch_chunk& c : b.chunks) {
        const std::size_t used = ceil_div(c.start + c.tokens.size(), bs);
        const int table_offset = static_cast<int>(n_tables);
        for (std::size_t i = 0; i < used; ++i) table[n_tables++] = static_cast<int>(c.blocks[i]);
        for (std::size_t i = 0; i < c.tokens.size(); ++i, ++t) {
            tok[t] = c.tokens[i];
            pos[t] = static_cast<int>(c.start + i);
            off[t] = table_offset;
        }
        for (std::size_t k = t - c.logits; k < t; ++k) logit_rows[s++] = static_cast<int>(k);
    }
    if (run > T) {
        // Padding tokens: token 0 at position 0 of the spare block.
        table[n_tables] = static_cast<int>(m_kv_blocks);
        for (; t < run; ++t) {
            tok[t] = 0;
            pos[t] = 0;
            off[t] = static_cast<int>(n_tables);
            logit_rows[t] = static_cast<int>(t);
        }
        ++n_tables;
    }

    m_unfinished = true;
    check(cudaMemcpyAsync(m_meta.get(), m_meta_host.get(), (4 * m_cap.tokens + n_tables) * sizeof(int),
                          cudaMemcpyHostToDevice, m_stream),
          "cudaMemcpyAsync (step metadata)");
    if (decode) {
        check(cudaGraphLaunch(graph_for(run, static_cast<int>(parts)), m_stream), "cudaGraphLaunch");
    } else {
        forward(T, S, static_cast<int>(parts));
    }
    const std::size_t V = m_config.n_vocab;
    if (S > 0) {
        if (argmax_only) {
            argmax_rows(m_logits.as<float>(), static_cast<int>(S), static_cast<int>(V), m_argmax.as<int>(), m_stream);
            check(cudaMemcpyAsync(m_argmax_host.get(), m_argmax.get(), S * sizeof(int), cudaMemcpyDeviceToHost,
                                  m_stream),
                  "cudaMemcpyAsync (argmax)");
        } else {
            check(cudaMemcpyAsync(m_logits_host.get(), m_logits.get(), S * V * sizeof(float), cudaMemcpyDeviceToHost,
                                  m_stream),
                  "cudaMemcpyAsync (logits)");
        }
    }
    m_unfinished = false;
    return S;
}

cudaGraphExec_t cuda_forward::graph_for(std::size_t tokens, int parts) {
    const auto key = std::make_pair(tokens, parts);
    if (auto it = m_graphs.find(key); it != m_graphs.end()) return it->second;
    // Run the step eagerly once first, so that anything done lazily on a
    // first use (cuBLAS heuristics, module loading) happens outside the
    // capture. Its cache writes are the same values the graph writes again.
    forward(tokens, tokens, parts);
    check(cudaStreamBeginCapture(m_stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    cudaGraph_t graph = nullptr;
    try {
        forward(tokens, tokens, parts);
    } catch (...) {
        cudaStreamEndCapture(m_stream, &graph);
        if (graph != nullptr) cudaGraphDestroy(graph);
        cudaGetLastError();
        throw;
    }
    check(cudaStreamEndCapture(m_stream, &graph), "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check(made, "cudaGraphInstantiate");
    m_graphs.emplace(key, exec);
    ++m_graphs_captured;
    return exec;
}

void cuda_forward::gemm(const void* w, std::size_t n, std::size_t k, const void* x, std::size_t rows, float* y,
                        float beta) {
    // Row-major y[rows][n] = x[rows][k] . w[n][k]^T is, column-major,
    // y (n x rows) = w^T (n x k, w stored k x n) . x (k x rows).
    const float alpha = 1.0f;
    const cudaDataType_t in = m_type == dtype::bf16 ? CUDA_R_16BF : CUDA_R_32F;
    // FP32 accumulation. With f32 inputs and the default math mode (set at
    // construction) this is plain FP32, no TF32.
    const cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
    check(cublasGemmEx(m_cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(rows),
                       static_cast<int>(k), &alpha, w, in, static_cast<int>(k), x, in, static_cast<int>(k), &beta, y,
                       CUDA_R_32F, static_cast<int>(n), compute, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
}

void cuda_forward::forward(std::size_t tokens, std::size_t rows, int parts) {
    const model_config& c = m_config;
    const std::size_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, V = c.n_vocab;
    const int T = static_cast<int>(tokens);
    const int iE = static_cast<int>(E);
    const step_meta sm = meta();
    const device_weights& w = *m_weights;
    float* x = m_x.as<float>();
    void* xn = m_xn.get();
    float* qkv = m_qkv.as<float>();
    void* att = m_att.get();
    float* gate_up = m_gate_up.as<float>();
    void* h = m_h.get();

    rope_params rp;
    rp.n_head = static_cast<int>(c.n_head);
    rp.n_head_kv = static_cast<int>(c.n_head_kv);
    rp.head_dim = static_cast<int>(c.head_dim);
    rp.rope_dim = static_cast<int>(c.rope_dim);
    rp.halves = c.rope == rope_style::halves;
    rp.inv_freq = m_inv_freq.as<const double>();

    attention_params ap;
    ap.n_tokens = T;
    ap.n_head = rp.n_head;
    ap.n_head_kv = rp.n_head_kv;
    ap.head_dim = rp.head_dim;
    ap.block_size = static_cast<int>(m_block_size);
    ap.n_parts = parts;
    ap.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim)); // as kernels::attend

    // x = token embeddings; then per layer, as cpu_forward::run.
    embed(m_type, w.token_embd(), iE, sm.tokens, T, x, m_stream);
    for (std::size_t l = 0; l < c.n_layer; ++l) {
        const device_layer& d = w.layer(l);
        rmsnorm(m_type, x, d.attn_norm, iE, c.rms_eps, nullptr, T, xn, m_stream);
        gemm(d.wqkv, Q + 2 * KV, E, xn, tokens, qkv, 0.0f);
        qkv_finish(m_type, qkv, d.bias_qkv, T, rp, sm, kv_layer(l), ap.block_size, m_stream);
        attention(m_type, qkv, static_cast<int>(Q + 2 * KV), kv_layer(l), sm, ap, m_partial.as<float>(), att, m_stream);
        gemm(d.wo, E, Q, att, tokens, x, 1.0f); // x += att . Wo^T
        rmsnorm(m_type, x, d.ffn_norm, iE, c.rms_eps, nullptr, T, xn, m_stream);
        gemm(d.w_gate_up, 2 * F, E, xn, tokens, gate_up, 0.0f);
        swiglu(m_type, gate_up, static_cast<int>(F), T, h, m_stream);
        gemm(d.w_down, E, F, h, tokens, x, 1.0f); // x += h . Wdown^T
    }
    if (rows > 0) {
        rmsnorm(m_type, x, w.output_norm(), iE, c.rms_eps, sm.logit_rows, static_cast<int>(rows), xn, m_stream);
        gemm(w.output(), V, E, xn, rows, m_logits.as<float>(), 0.0f);
    }
}

void cuda_forward::read_logits(step_output& out, std::size_t rows) const {
    const std::size_t V = m_config.n_vocab;
    const float* host = m_logits_host.as<const float>();
    out.vocab = V;
    out.logits.assign(host, host + rows * V);
}

void cuda_forward::read_argmax(std::vector<token_id>& out, std::size_t rows) const {
    const int* host = m_argmax_host.as<const int>();
    out.resize(rows);
    for (std::size_t r = 0; r < rows; ++r) {
        if (host[r] < 0 || static_cast<std::size_t>(host[r]) >= m_config.n_vocab) {
            throw std::runtime_error(fmt::format("logits row {} has no number to choose (all NaN)", r));
        }
        out[r] = host[r];
    }
}

} // namespace weft::serve::cuda
