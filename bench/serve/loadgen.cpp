// weft-loadgen: the load generator of weft's LLM server benchmarks. Drives an
// OpenAI-compatible server (POST /v1/completions or /v1/chat/completions,
// streamed as Server-Sent Events or not) and reports the metrics of vLLM's
// benchmarks/benchmark_serving.py: TTFT, TPOT, ITL, E2E latency, throughput,
// goodput, plus errors by kind.
//
// Two load models:
//  - closed loop (--concurrency C): C clients, each on its own kept-alive
//    connection, sending its next request when the last one finished;
//  - open loop (--rate R): Poisson arrivals at R requests/s from a fixed
//    seed; each request takes an idle kept-alive connection or opens one, at
//    most --max-connections at once (arrivals beyond wait, and the wait is
//    reported as queueing).
// The run ends after --requests requests or when --duration has passed
// (no request starts after it; those in flight finish). With --threads N the
// clients (or the arrival rate) are split over N io_context threads.
//
// Exit status: 0 when some request succeeded, 3 when none did, 2 on bad
// arguments. Ctrl-C stops issuing requests and reports what finished.
#include "loadgen_client.hpp"
#include "loadgen_report.hpp"

#include <weft/async_scope.hpp>
#include <weft/async_semaphore.hpp>
#include <weft/io/io_context.hpp>
#include <weft/task.hpp>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

namespace {

namespace io = weft::io;
using namespace weft::loadgen;
using weft::task;
using seconds_d = std::chrono::duration<double>;

std::atomic<bool> g_interrupted{false};

extern "C" void on_interrupt(int) {
    g_interrupted.store(true, std::memory_order_relaxed);
    std::signal(SIGINT, SIG_DFL); // a second Ctrl-C ends the process
}

/// What every worker shares: the clock origin, the limits, the request counter.
struct run_plan {
    io::clock::time_point epoch;
    io::clock::time_point issue_end = io::clock::time_point::max();
    long total = std::numeric_limits<long>::max();
    std::atomic<long> next{0};

    /// The index of the next request to issue at `now`; -1 once the run is over.
    long claim(io::clock::time_point now) {
        if (g_interrupted.load(std::memory_order_relaxed) || now >= issue_end) {
            return -1;
        }
        const long i = next.fetch_add(1, std::memory_order_relaxed);
        return i < total ? i : -1;
    }
    double since_epoch(io::clock::time_point t) const { return seconds_d(t - epoch).count(); }
};

struct worker {
    io::io_context ctx;
    std::vector<request_record> records;
    std::vector<double> itls;
    io::clock::time_point finished{};
};

// --- Closed loop -----------------------------------------------------------------

task<void> closed_client(worker& w, const client_config& cfg, run_plan& plan) {
    connection conn;
    for (;;) {
        const auto now = io::clock::now();
        const long index = plan.claim(now);
        if (index < 0) {
            break;
        }
        request_record r;
        r.arrival_s = plan.since_epoch(now);
        co_await execute(w.ctx, cfg, conn, index, plan.epoch, r, w.itls);
        const bool refused = r.error == error_kind::connect;
        w.records.push_back(std::move(r));
        if (refused) {
            // Without a server, connect fails at once: pace the retries.
            co_await io::sleep_for(w.ctx, std::chrono::milliseconds(10));
        }
    }
}

task<void> run_closed(worker& w, const client_config& cfg, run_plan& plan, int clients) {
    weft::async_scope scope;
    for (int i = 0; i < clients; ++i) {
        scope.spawn(closed_client(w, cfg, plan));
    }
    co_await scope.join();
    w.finished = io::clock::now();
}

// --- Open loop ---------------------------------------------------------------------

struct connection_pool {
    explicit connection_pool(int max) : permits(max, max) {}
    std::vector<std::unique_ptr<connection>> idle;
    weft::async_semaphore permits;
};

task<void> open_request(worker& w, const client_config& cfg, run_plan& plan, connection_pool& pool, long index,
                        io::clock::time_point arrival) {
    co_await pool.permits.acquire();
    std::unique_ptr<connection> conn;
    while (!pool.idle.empty() && !conn) {
        conn = std::move(pool.idle.back());
        pool.idle.pop_back();
        if (!conn->idle_and_usable()) {
            conn.reset();
        }
    }
    if (!conn) {
        conn = std::make_unique<connection>();
    }
    request_record r;
    r.arrival_s = plan.since_epoch(arrival);
    co_await execute(w.ctx, cfg, *conn, index, plan.epoch, r, w.itls);
    if (conn->is_open()) {
        pool.idle.push_back(std::move(conn));
    }
    w.records.push_back(std::move(r));
    pool.permits.release();
}

/// Exponential gaps from a splitmix64 stream: the same arrivals on every
/// platform for a given seed.
class poisson_arrivals {
public:
    poisson_arrivals(double rate, std::uint64_t seed) : m_rate(rate), m_state(seed) {}
    io::clock::duration next_gap() {
        std::uint64_t z = (m_state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        const double u = static_cast<double>(z >> 11) * 0x1.0p-53; // [0, 1)
        return std::chrono::duration_cast<io::clock::duration>(seconds_d(-std::log1p(-u) / m_rate));
    }

private:
    double m_rate;
    std::uint64_t m_state;
};

task<void> run_open(worker& w, const client_config& cfg, run_plan& plan, double rate, int max_connections,
                    std::uint64_t seed) {
    connection_pool pool(max_connections);
    weft::async_scope scope;
    poisson_arrivals arrivals(rate, seed);
    for (io::clock::time_point at = plan.epoch;;) {
        at += arrivals.next_gap();
        if (at >= plan.issue_end) {
            break;
        }
        if (at > io::clock::now()) {
            co_await io::sleep_until(w.ctx, at);
        }
        const long index = plan.claim(at);
        if (index < 0) {
            break;
        }
        scope.spawn(open_request(w, cfg, plan, pool, index, at));
    }
    co_await scope.join();
    w.finished = io::clock::now();
}

// --- Warm-up -----------------------------------------------------------------------

task<int> warm_up(io::io_context& ctx, const client_config& cfg, int count) {
    connection conn;
    std::vector<double> itls;
    int ok = 0;
    for (int i = 0; i < count; ++i) {
        request_record r;
        co_await execute(ctx, cfg, conn, -1 - i, io::clock::now(), r, itls);
        ok += r.error == error_kind::none ? 1 : 0;
    }
    co_return ok;
}

io::endpoint resolve(const std::string& host, int port) {
    const std::string h = host == "localhost" ? "127.0.0.1" : host;
    const bool v6 = h.find(':') != std::string::npos;
    return io::endpoint::parse(v6 ? fmt::format("[{}]:{}", h, port) : fmt::format("{}:{}", h, port));
}

} // namespace

int main(int argc, char** argv) {
    run_config rc;
    std::string json_path;
    bool per_request = false;
    double slo_ttft = 0, slo_tpot = 0, slo_e2e = 0;
    std::string api_key;

    CLI::App app{"weft-loadgen: OpenAI-API load generator (vLLM benchmark_serving metrics)"};
    app.add_option("--host", rc.host, "server address (numeric, or localhost)")->capture_default_str();
    app.add_option("--port", rc.port, "server port")->capture_default_str()->check(CLI::Range(1, 65535));
    app.add_option("--endpoint", rc.endpoint, "completions or chat")
        ->capture_default_str()
        ->check(CLI::IsMember({"completions", "chat"}));
    app.add_option("--model", rc.model, "model name sent in each request")->capture_default_str();
    app.add_option("--prompt-tokens", rc.prompt_tokens, "prompt length in words (one token each in a large vocabulary; about 3 in the demo models' vocabularies)")
        ->capture_default_str()
        ->check(CLI::Range(0, 1 << 20));
    app.add_option("--shared-prefix-tokens", rc.shared_prefix,
                   "words, the same in every request, before each prompt's own (a system prompt; as "
                   "benchmark_serving's --random-prefix-len)")
        ->capture_default_str()
        ->check(CLI::Range(0, 1 << 20));
    app.add_option("--max-tokens", rc.max_tokens, "max_tokens of each request")
        ->capture_default_str()
        ->check(CLI::Range(1, 1 << 24));
    auto* requests_opt = app.add_option("--requests", rc.requests, "total requests (default 1000 without --duration)")
                             ->check(CLI::PositiveNumber);
    auto* duration_opt = app.add_option("--duration", rc.duration_s, "seconds during which requests are issued")
                             ->check(CLI::PositiveNumber);
    auto* concurrency_opt = app.add_option("--concurrency", rc.concurrency, "closed loop: clients (default 1)")
                                ->check(CLI::Range(1, 1 << 20));
    auto* rate_opt = app.add_option("--rate", rc.rate, "open loop: Poisson arrivals per second")
                         ->check(CLI::PositiveNumber);
    concurrency_opt->excludes(rate_opt);
    rc.max_connections = 4096;
    app.add_option("--max-connections", rc.max_connections, "open loop: connection cap")
        ->capture_default_str()
        ->check(CLI::Range(1, 1 << 20));
    app.add_flag("--stream,!--no-stream", rc.stream, "stream the answers as SSE (default on)");
    app.add_flag("--stream-usage", rc.stream_usage, "ask for a usage chunk (stream_options.include_usage)");
    app.add_flag("--ignore-eos,!--no-ignore-eos", rc.ignore_eos, "send ignore_eos: true (default on)");
    app.add_option("--threads", rc.threads, "io_context threads")->capture_default_str()->check(CLI::Range(1, 256));
    app.add_option("--goodput-ttft-ms", slo_ttft, "goodput SLO on TTFT")->check(CLI::PositiveNumber);
    app.add_option("--goodput-tpot-ms", slo_tpot, "goodput SLO on TPOT")->check(CLI::PositiveNumber);
    app.add_option("--goodput-e2e-ms", slo_e2e, "goodput SLO on end-to-end latency")->check(CLI::PositiveNumber);
    app.add_option("--json", json_path, "write the results and configuration to this file");
    app.add_flag("--per-request", per_request, "include every request (timings, max ITL) in the JSON");
    app.add_option("--label", rc.label, "a name for this run, copied to the report");
    app.add_option("--timeout-s", rc.timeout_s, "limit per request, connect included")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--api-key", api_key, "sent as Authorization: Bearer KEY");
    app.add_option("--seed", rc.seed, "seed of prompts and arrivals")->capture_default_str();
    app.add_option("--warmup", rc.warmup, "requests sent one by one before the run, not measured")
        ->capture_default_str()
        ->check(CLI::Range(0, 1 << 20));
    CLI11_PARSE(app, argc, argv);

    if (requests_opt->count() == 0 && duration_opt->count() == 0) {
        rc.requests = 1000;
    }
    if (rate_opt->count() == 0) {
        rc.rate = 0;
        rc.concurrency = std::max(rc.concurrency, 1);
        rc.threads = std::min(rc.threads, rc.concurrency);
    } else {
        rc.concurrency = 0;
    }
    if (slo_ttft > 0) {
        rc.slo_ttft_ms = slo_ttft;
    }
    if (slo_tpot > 0) {
        rc.slo_tpot_ms = slo_tpot;
    }
    if (slo_e2e > 0) {
        rc.slo_e2e_ms = slo_e2e;
    }

    client_config cfg;
    try {
        cfg.server = resolve(rc.host, rc.port);
    } catch (const std::exception& e) {
        fmt::print(stderr, "weft-loadgen: bad --host {}: {} (numeric addresses only)\n", rc.host, e.what());
        return 2;
    }
    cfg.host_header = fmt::format("{}:{}", rc.host, rc.port);
    cfg.api = rc.endpoint == "chat" ? api_kind::chat : api_kind::completions;
    cfg.model = rc.model;
    cfg.prompt_words = rc.prompt_tokens;
    cfg.shared_prefix_words = rc.shared_prefix;
    cfg.max_tokens = rc.max_tokens;
    cfg.stream = rc.stream;
    cfg.stream_usage = rc.stream_usage;
    cfg.ignore_eos = rc.ignore_eos;
    cfg.api_key = api_key;
    cfg.timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(seconds_d(rc.timeout_s));
    cfg.seed = rc.seed;

    if (rc.warmup > 0) {
        io::io_context ctx;
        const int ok = ctx.run(warm_up(ctx, cfg, rc.warmup));
        fmt::print(stderr, "weft-loadgen: warm-up: {} of {} requests succeeded\n", ok, rc.warmup);
    }

    std::vector<std::unique_ptr<worker>> workers;
    for (int t = 0; t < rc.threads; ++t) {
        workers.push_back(std::make_unique<worker>());
    }
    std::signal(SIGINT, on_interrupt);
    run_plan plan;
    if (rc.requests > 0) {
        plan.total = rc.requests;
    }
    plan.epoch = io::clock::now();
    if (rc.duration_s > 0) {
        plan.issue_end = plan.epoch + std::chrono::duration_cast<io::clock::duration>(seconds_d(rc.duration_s));
    }
    {
        std::vector<std::jthread> threads;
        for (int t = 0; t < rc.threads; ++t) {
            threads.emplace_back([&, t] {
                worker& w = *workers[static_cast<std::size_t>(t)];
                try {
                    if (rc.rate > 0) {
                        const int cap = (rc.max_connections + rc.threads - 1) / rc.threads;
                        w.ctx.run(run_open(w, cfg, plan, rc.rate / rc.threads, cap,
                                           rc.seed * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(t)));
                    } else {
                        const int clients = rc.concurrency / rc.threads + (t < rc.concurrency % rc.threads ? 1 : 0);
                        w.ctx.run(run_closed(w, cfg, plan, clients));
                    }
                } catch (const std::exception& e) {
                    fmt::print(stderr, "weft-loadgen: worker {} failed: {}\n", t, e.what());
                    w.finished = io::clock::now();
                }
            });
        }
    }

    std::vector<request_record> records;
    std::vector<double> itls;
    io::clock::time_point last = plan.epoch;
    for (auto& w : workers) {
        last = std::max(last, w->finished);
        records.insert(records.end(), std::make_move_iterator(w->records.begin()),
                       std::make_move_iterator(w->records.end()));
        itls.insert(itls.end(), w->itls.begin(), w->itls.end());
    }
    workers.clear();
    std::sort(records.begin(), records.end(),
              [](const request_record& a, const request_record& b) { return a.index < b.index; });

    const summary s = summarize_run(records, std::move(itls), seconds_d(last - plan.epoch).count(), rc);
    print_report(stdout, s, rc);
    if (!json_path.empty()) {
        std::ofstream out(json_path);
        out << to_json(s, rc, per_request ? &records : nullptr).dump(2) << '\n';
        if (!out) {
            fmt::print(stderr, "weft-loadgen: cannot write {}\n", json_path);
            return 2;
        }
    }
    return s.completed > 0 ? 0 : 3;
}
