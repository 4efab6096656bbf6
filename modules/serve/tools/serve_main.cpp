// weft-serve: an OpenAI-compatible LLM server (completions, chat, streaming)
// over weft's serving engine and CPU backend.
//
//   weft-serve                               # the demo model, made on first run
//   weft-serve --model qwen2-0.5b-q8_0.gguf --port 9000 --api-key secret
//
// The HTTP server listens before the model is loaded (/health says
// "loading" until it is ready). SIGINT/SIGTERM: stop accepting, let the
// requests in flight finish for up to --shutdown-grace-s, exit 0.
#include <weft/io/io_context.hpp>
#include <weft/io/signal_set.hpp>
#include <weft/serve/chat_template.hpp>
#include <weft/serve/cpu_backend.hpp>
#include <weft/serve/cuda_backend.hpp>
#include <weft/serve/demo_model.hpp>
#include <weft/serve/engine.hpp>
#include <weft/serve/gguf.hpp>
#include <weft/serve/kv_cache.hpp>
#include <weft/serve/model.hpp>
#include <weft/serve/openai_server.hpp>
#include <weft/serve/tokenizer_gguf.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>

namespace {

using namespace weft::serve;

struct cli_options {
    std::string model_path;
    std::string demo_size = "tiny";
    std::string demo_type = "f32";
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;
    std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
    std::size_t http_threads = 1;
    double split_step_us = cpu_backend_options{}.split_step_us;
    bool sequence_lanes = cpu_backend_options{}.sequence_lanes;
    std::size_t kv_cache_mb = 256;
    std::size_t max_batch_tokens = 512;
    std::size_t max_running = 256;
    std::size_t max_queue = 1024;
    std::size_t max_context = 0;
    double prefill_per_decode = 1.0;
    std::size_t min_prefill_tokens = 32;
    bool prefix_caching = true;
    std::size_t speculative_tokens = 0;
    std::string device = "cpu";
    std::string kv_type = "f16";
    int cuda_device = 0;
    std::string api_key;
    double request_timeout_s = 0;
    double shutdown_grace_s = 10;
    std::string served_model_name;
    bool no_request_log = false;
};

/// Loading was interrupted by SIGINT/SIGTERM.
struct load_interrupted : std::runtime_error {
    load_interrupted() : std::runtime_error("interrupted") {}
};

bool stop_signal_pending() {
    sigset_t pending;
    sigemptyset(&pending);
    if (sigpending(&pending) != 0) return false;
    return sigismember(&pending, SIGINT) == 1 || sigismember(&pending, SIGTERM) == 1;
}

/// Redraws a one-line progress bar on stderr when it is a terminal, and
/// gives up loading as soon as a stop signal is pending.
class load_progress {
public:
    load_progress() : m_tty(isatty(STDERR_FILENO) == 1) {}

    void operator()(std::size_t done, std::size_t total) {
        if (stop_signal_pending()) throw load_interrupted();
        if (!m_tty || total == 0) return;
        const int percent = static_cast<int>(done * 100 / total);
        if (percent == m_last) return;
        m_last = percent;
        constexpr int width = 30;
        const int filled = percent * width / 100;
        fmt::print(stderr, "\r  loading [{:=<{}}{: <{}}] {:3}%  {:.1f}/{:.1f} MB", "", filled, "", width - filled,
                   percent, static_cast<double>(done) / 1e6, static_cast<double>(total) / 1e6);
        if (done >= total) fmt::print(stderr, "\n");
        std::fflush(stderr);
    }

private:
    bool m_tty;
    int m_last = -1;
};

std::string weights_type(const model& m) {
    if (m.layers.empty()) return std::string(type_info(m.token_embd.type).name);
    return std::string(type_info(m.layers.front().wq.type).name);
}

void print_banner(const cli_options& o, const model& m, const std::filesystem::path& path,
                  const std::string& served_name, const engine& e, const chat_template& tmpl,
                  const weft::io::endpoint& at, bool demo, std::size_t kv_block_bytes) {
    const model_config& c = m.config();
    const std::size_t block = e.backend().kv_block_size();
    const std::size_t blocks = e.backend().num_kv_blocks();
    const scheduler_config& s = e.options().scheduler;
    const double kv_mb = static_cast<double>(blocks * kv_block_bytes) / (1024.0 * 1024.0);
    const std::string url = fmt::format("http://{}", at.to_string());
    const std::string auth = o.api_key.empty() ? "" : " -H 'Authorization: Bearer <your key>'";

    fmt::print("\nweft-serve\n");
    fmt::print("  model      {} ({})\n", served_name, path.string());
    fmt::print("  size       {:.2f} M parameters, {:.1f} MB file, {} weights; {} layers, width {}, vocab {}\n",
               static_cast<double>(m.parameter_count()) / 1e6, static_cast<double>(m.file().file_size()) / 1e6,
               weights_type(m), c.n_layer, c.n_embd, c.n_vocab);
    if (demo) {
        fmt::print("  WARNING    this demo model has random weights: it exercises the server, its text is noise\n");
    }
    fmt::print("  backend    {}\n", e.backend().describe());
    fmt::print("  KV cache   {:.1f} MiB: {} blocks of {} tokens ({} tokens)\n", kv_mb, blocks, block, blocks * block);
    fmt::print("  scheduler  context {} tokens, {} tokens per step, {} running, {} waiting at most; prefix caching {}\n",
               std::min(s.max_context, blocks * block), s.max_batch_tokens, s.max_running, s.max_waiting,
               s.prefix_caching ? "on" : "off");
    if (e.options().speculative_tokens > 0) {
        fmt::print("  speculate  up to {} prompt-lookup draft tokens per step for greedy requests\n",
                   e.options().speculative_tokens);
    }
    fmt::print("  chat       {}\n", tmpl.note());
    fmt::print("  listening  {} ({} HTTP thread{}){}\n", url, o.http_threads, o.http_threads == 1 ? "" : "s",
               o.api_key.empty() ? "" : ", API key required");
    fmt::print("\n  try:\n");
    fmt::print("    curl {}/v1/completions -H 'Content-Type: application/json'{} \\\n"
               "      -d '{{\"prompt\": \"Once upon a time\", \"max_tokens\": 32}}'\n",
               url, auth);
    fmt::print("    curl -N {}/v1/chat/completions -H 'Content-Type: application/json'{} \\\n"
               "      -d '{{\"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}], \"max_tokens\": 32, "
               "\"stream\": true}}'\n",
               url, auth);
    fmt::print("    curl {}/metrics\n\n", url);
    std::fflush(stdout);
}

void log_finished(const request_summary& s) {
    spdlog::info("request {} {}: {} prompt ({} cached) + {} completion tokens, queue {:.1f} ms, ttft {:.1f} ms, "
                 "e2e {:.1f} ms{}",
                 s.id, to_string(s.reason), s.prompt_tokens, s.cached_prompt_tokens, s.completion_tokens,
                 s.queue_seconds * 1e3, s.ttft_seconds * 1e3, s.e2e_seconds * 1e3,
                 s.preemptions > 0 ? fmt::format(", {} preemptions", s.preemptions) : std::string());
}

int run(const cli_options& o, weft::io::io_context& control, weft::io::signal_set& signals) {
    openai_server_options so;
    so.host = o.host;
    so.port = o.port;
    so.http_threads = std::max<std::size_t>(1, o.http_threads);
    so.routes.api_key = o.api_key;
    const auto grace = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::duration<double>(std::max(0.0, o.shutdown_grace_s)));
    // The HTTP side waits a little longer than the engine, so that requests
    // end with their final update rather than a cut connection.
    so.http.shutdown_timeout = grace + std::chrono::seconds(2);

    std::unique_ptr<openai_server> server;
    try {
        server = std::make_unique<openai_server>(so);
    } catch (const std::exception& e) {
        spdlog::error("cannot listen on {}:{}: {}", o.host, o.port, e.what());
        return 1;
    }
    spdlog::info("listening on http://{} while the model loads (/health: loading)",
                 server->local_endpoint().to_string());

    std::unique_ptr<engine> eng;
    std::string served_name;
    try {
        bool demo = o.model_path.empty();
        std::filesystem::path path = o.model_path;
        if (demo) {
            const ggml_type t = parse_weight_type(o.demo_type);
            spdlog::info("no --model: using the demo model '{}' ({}) from {}", o.demo_size, type_info(t).name,
                         default_cache_dir().string());
            path = ensure_demo_model(o.demo_size, t);
        }
        load_options lo;
        lo.progress = load_progress();
        const auto start = std::chrono::steady_clock::now();
        std::shared_ptr<const model> m = model::load(path, lo);
        demo = demo || m->name().find("random weights") != std::string::npos;
        auto tok = std::make_shared<const tokenizer>(tokenizer_data_from_gguf(m->file()));
        const chat_template tmpl = chat_template::for_tokenizer(*tok);

        const model_config& c = m->config();
        std::unique_ptr<model_backend> backend;
        std::size_t per_block = 0;
        if (o.device == "cuda") {
            if (!cuda_available()) {
                throw std::runtime_error("--device cuda: no usable GPU: " + cuda_describe_devices());
            }
            cuda_backend_options co;
            co.device = o.cuda_device;
            per_block = cuda_backend::kv_bytes_per_block(c, co.kv_block_size, co.precision);
            co.kv_blocks = std::max<std::size_t>(1, o.kv_cache_mb * 1024 * 1024 / per_block);
            backend = std::make_unique<cuda_backend>(m, co);
        } else {
            cpu_backend_options bo;
            bo.threads = std::max<std::size_t>(1, o.threads);
            bo.split_step_us = o.split_step_us;
            bo.sequence_lanes = o.sequence_lanes;
            bo.kv_type = parse_weight_type(o.kv_type); // f16 or f32 (checked by the option)
            per_block = kv_cache::bytes_per_block(c, bo.kv_block_size, bo.kv_type);
            bo.kv_blocks = std::max<std::size_t>(1, o.kv_cache_mb * 1024 * 1024 / per_block);
            backend = std::make_unique<cpu_backend>(m, bo);
        }

        engine_options eo;
        eo.scheduler.max_batch_tokens = o.max_batch_tokens;
        eo.scheduler.max_running = o.max_running;
        eo.scheduler.max_waiting = o.max_queue;
        eo.scheduler.prefill_per_decode = o.prefill_per_decode;
        eo.scheduler.min_prefill_tokens = o.min_prefill_tokens;
        eo.scheduler.prefix_caching = o.prefix_caching;
        eo.speculative_tokens = o.speculative_tokens;
        eo.scheduler.max_context = o.max_context > 0 ? o.max_context : (c.n_ctx_train > 0 ? c.n_ctx_train : 2048);
        eo.request_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::duration<double>(std::max(0.0, o.request_timeout_s)));
        if (!o.no_request_log) eo.on_finish = log_finished;
        eng = std::make_unique<engine>(std::move(backend), tok, eo);

        // A demo model's own name has spaces and parentheses; its file name
        // is friendlier in the API.
        served_name = !o.served_model_name.empty() ? o.served_model_name
                      : demo                       ? path.stem().string()
                                                   : m->name();
        spdlog::info("model loaded in {:.2f} s; {}", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                     tmpl.note());
        print_banner(o, *m, path, served_name, *eng, tmpl, server->local_endpoint(), demo, per_block);
        server->set_ready(*eng, served_name, tmpl);
    } catch (const load_interrupted&) {
        spdlog::info("interrupted while loading: shutting down");
        server->join();
        return 0;
    } catch (const std::exception& e) {
        spdlog::error("cannot serve the model: {}", e.what());
        server->join();
        return 1;
    }
    spdlog::info("ready: serving '{}' on http://{}", served_name, server->local_endpoint().to_string());

    const int received = control.run(signals.wait());
    spdlog::info("{}: shutting down, requests in flight get up to {:.1f} s", received == SIGINT ? "SIGINT" : "SIGTERM",
                 o.shutdown_grace_s);
    server->begin_shutdown();
    eng->shutdown(std::chrono::steady_clock::now() + grace);
    server->join();
    server.reset();
    eng.reset();
    spdlog::info("stopped");
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    cli_options o;
    CLI::App app{"weft-serve: an OpenAI-compatible LLM server (POST /v1/completions, /v1/chat/completions, "
                 "GET /v1/models, /health, /metrics)"};
    app.add_option("-m,--model", o.model_path, "GGUF model file (default: the built-in demo model, made on first run)");
    app.add_option("--demo-size", o.demo_size, "demo model size without --model: tiny, small or 1b")->capture_default_str();
    app.add_option("--demo-type", o.demo_type, "demo model weight type: f32, f16, bf16, q8_0, q4_0, q4_k")
        ->capture_default_str();
    app.add_option("--host", o.host, "address to listen on (numeric, or localhost)")->capture_default_str();
    app.add_option("-p,--port", o.port, "port to listen on (0: any free port)")->capture_default_str();
    app.add_option("-t,--threads", o.threads, "compute threads of the CPU backend")->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--split-step-us", o.split_step_us,
                   "steps estimated below this on one thread run on one compute thread (0: split every job)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_flag("--sequence-lanes,!--no-sequence-lanes", o.sequence_lanes,
                 "split a step of many sequences by sequences, each compute thread running every layer over its "
                 "own (on by default); off: every product split by rows")
        ->capture_default_str();
    app.add_option("--http-threads", o.http_threads, "HTTP loop threads (SO_REUSEPORT shards)")->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--kv-cache-mb", o.kv_cache_mb, "KV cache memory in MiB")->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--max-batch-tokens", o.max_batch_tokens, "tokens per engine step (>= --max-running)")
        ->capture_default_str()->check(CLI::PositiveNumber);
    app.add_option("--max-running", o.max_running, "sequences decoding at once")->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--max-queue", o.max_queue, "requests waiting before 429")->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--max-context", o.max_context, "prompt + completion limit in tokens (default: the model's)");
    app.add_option("--device", o.device, "where the model runs: cpu, or cuda (a GPU, when weft was built with CUDA)")
        ->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
    app.add_option("--kv-type", o.kv_type, "element type of the CPU backend's KV cache: f16 (half the memory) or f32")
        ->capture_default_str()->check(CLI::IsMember({"f16", "f32"}));
    app.add_option("--cuda-device", o.cuda_device, "CUDA device ordinal with --device cuda")->capture_default_str();
    app.add_option("--prefill-per-decode", o.prefill_per_decode,
                   "prompt tokens per decoding stream in a step (0: no limit; 1 keeps a step at most about doubled)")
        ->capture_default_str()->check(CLI::NonNegativeNumber);
    app.add_option("--min-prefill-tokens", o.min_prefill_tokens,
                   "prompt tokens a decoding step may take whatever --prefill-per-decode allows")
        ->capture_default_str();
    app.add_flag("--prefix-caching,!--no-prefix-caching", o.prefix_caching,
                 "reuse the KV blocks of prompt prefixes seen before (on by default)");
    app.add_option("--speculative-tokens", o.speculative_tokens,
                   "speculative decoding by prompt lookup: draft tokens per step for greedy requests (0: off); "
                   "the output is unchanged")
        ->capture_default_str()->check(CLI::Range(0, 16));
    app.add_option("--api-key", o.api_key, "require 'Authorization: Bearer <key>' on /v1/*");
    app.add_option("--request-timeout-s", o.request_timeout_s, "longest a request may run (0: no limit)")
        ->capture_default_str()->check(CLI::NonNegativeNumber);
    app.add_option("--shutdown-grace-s", o.shutdown_grace_s, "time requests in flight get on shutdown")
        ->capture_default_str()->check(CLI::NonNegativeNumber);
    app.add_option("--served-model-name", o.served_model_name, "model name in the API (default: the model's name)");
    app.add_flag("--no-request-log", o.no_request_log, "no log line per finished request");
    CLI11_PARSE(app, argc, argv);

    spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %v");
    try {
        // Before any other thread starts, so that every thread inherits the
        // blocked mask and the signals queue for the signalfd.
        weft::io::io_context control;
        weft::io::signal_set signals(control, {SIGINT, SIGTERM});
        return run(o, control, signals);
    } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        return 1;
    }
}
