/// \file
/// The load generator's results: `summarize_run` turns the request records
/// of a run into the metrics of vLLM's benchmarks/benchmark_serving.py, and
/// `print_report` / `to_json` present them with the run's configuration.
///
/// Definitions (over successful requests only, as vLLM does): request
/// throughput = completed / duration; output throughput = output tokens /
/// duration; total token throughput adds the input tokens (the server's
/// usage.prompt_tokens when it reports them, else the prompt's word count);
/// TPOT = (E2E - TTFT) / (output tokens - 1) for requests with more than one
/// token; goodput = requests meeting every SLO given / duration, a request
/// with at most one token counting as TPOT 0. Percentiles interpolate
/// linearly between order statistics (numpy's default); std is the
/// population standard deviation. Errors are counted by kind and, for HTTP
/// statuses, by code.
///
/// Threading: plain functions on values.
#pragma once

#include "loadgen_client.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace weft::loadgen {

/// The run's settings, reported alongside the results.
struct run_config {
    std::string label;
    std::string host = "127.0.0.1";
    int port = 8080;
    std::string endpoint = "completions";
    std::string model = "weft";
    int prompt_tokens = 32;
    int shared_prefix = 0;
    int max_tokens = 16;
    long requests = 0;       ///< 0: limited by duration only
    double duration_s = 0;   ///< 0: limited by requests only
    int concurrency = 0;     ///< closed loop; 0 in rate mode
    double rate = 0;         ///< open loop (requests/s); 0 in closed-loop mode
    int max_connections = 0; ///< open loop cap
    bool stream = true;
    bool stream_usage = false;
    bool ignore_eos = true;
    int threads = 1;
    double timeout_s = 300;
    std::uint64_t seed = 0;
    int warmup = 0;
    std::optional<double> slo_ttft_ms;
    std::optional<double> slo_tpot_ms;
    std::optional<double> slo_e2e_ms;
};

struct distribution {
    std::size_t count = 0;
    double mean = 0, std = 0, median = 0, p90 = 0, p99 = 0, max = 0; ///< milliseconds
};

/// Summarizes values given in seconds (reordered in place) in milliseconds.
distribution summarize_ms(std::vector<double>& seconds);

/// The `p`-th percentile (0..100) of sorted values, interpolating linearly.
double percentile(const std::vector<double>& sorted, double p) noexcept;

struct summary {
    double duration_s = 0;
    long issued = 0;
    long completed = 0;
    long failed = 0;
    long long total_input_tokens = 0;
    long long total_output_tokens = 0;
    double request_throughput = 0;
    std::optional<double> request_goodput;
    double output_throughput = 0;
    double total_token_throughput = 0;
    distribution ttft, tpot, itl, e2el;
    distribution max_itl;    ///< of each request's longest gap
    distribution queue_wait; ///< scheduled arrival to send (open loop: waiting for a connection)
    distribution connect;    ///< of the requests that opened a connection
    std::array<long, error_kind_count> errors{};
    std::map<int, long> http_status;
    std::map<std::string, long> finish_reasons;
    long incomplete_outputs = 0; ///< completed with fewer tokens than max_tokens
    long usage_mismatches = 0;   ///< usage.completion_tokens differs from the counted events (events of several tokens)
    std::vector<std::string> error_samples; ///< a few "kind: detail" lines
};

summary summarize_run(const std::vector<request_record>& records, std::vector<double> itls, double duration_s,
                      const run_config& cfg);

/// The human table (vLLM's layout, plus ITL max and errors).
void print_report(std::FILE* out, const summary& s, const run_config& cfg);

/// Everything: {"config": ..., results ..., "per_request": [...] when given}.
nlohmann::json to_json(const summary& s, const run_config& cfg, const std::vector<request_record>* per_request);

} // namespace weft::loadgen
