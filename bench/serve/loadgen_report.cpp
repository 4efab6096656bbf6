#include "loadgen_report.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace weft::loadgen {

namespace {

constexpr std::size_t max_error_samples = 8;

nlohmann::json distribution_json(const distribution& d) {
    return {{"count", d.count}, {"mean", d.mean}, {"std", d.std},  {"median", d.median},
            {"p90", d.p90},     {"p99", d.p99},   {"max", d.max}};
}

nlohmann::json optional_json(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); }

void rule(std::FILE* out, const char* title) {
    const std::string t = title;
    const std::size_t pad = t.size() >= 50 ? 0 : 50 - t.size();
    fmt::print(out, "{}{}{}\n", std::string(pad / 2, '-'), t, std::string(pad - pad / 2, '-'));
}

void row(std::FILE* out, const std::string& name, double value, int precision = 2) {
    fmt::print(out, "{:<40} {:<10.{}f}\n", name, value, precision);
}

void distribution_rows(std::FILE* out, const char* what, const distribution& d, bool with_max) {
    row(out, fmt::format("Mean {} (ms):", what), d.mean);
    row(out, fmt::format("Median {} (ms):", what), d.median);
    row(out, fmt::format("P90 {} (ms):", what), d.p90);
    row(out, fmt::format("P99 {} (ms):", what), d.p99);
    if (with_max) {
        row(out, fmt::format("Max {} (ms):", what), d.max);
    }
}

} // namespace

double percentile(const std::vector<double>& sorted, double p) noexcept {
    if (sorted.empty()) {
        return 0;
    }
    const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(sorted.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(rank));
    const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - static_cast<double>(lo));
}

distribution summarize_ms(std::vector<double>& seconds) {
    distribution d;
    d.count = seconds.size();
    if (seconds.empty()) {
        return d;
    }
    std::sort(seconds.begin(), seconds.end());
    const double n = static_cast<double>(seconds.size());
    const double mean = std::accumulate(seconds.begin(), seconds.end(), 0.0) / n;
    double sq = 0;
    for (const double v : seconds) {
        sq += (v - mean) * (v - mean);
    }
    d.mean = mean * 1e3;
    d.std = std::sqrt(sq / n) * 1e3;
    d.median = percentile(seconds, 50) * 1e3;
    d.p90 = percentile(seconds, 90) * 1e3;
    d.p99 = percentile(seconds, 99) * 1e3;
    d.max = seconds.back() * 1e3;
    return d;
}

summary summarize_run(const std::vector<request_record>& records, std::vector<double> itls, double duration_s,
                      const run_config& cfg) {
    summary s;
    s.duration_s = duration_s;
    s.issued = static_cast<long>(records.size());
    std::vector<double> ttfts, tpots, e2els, max_itls, waits, connects;
    std::array<std::size_t, error_kind_count> sampled{};
    long good_requests = 0;
    for (const request_record& r : records) {
        waits.push_back(std::max(0.0, r.start_s - r.arrival_s));
        if (r.connect_s >= 0) {
            connects.push_back(r.connect_s);
        }
        if (r.error != error_kind::none) {
            ++s.failed;
            ++s.errors[static_cast<std::size_t>(r.error)];
            if (r.error == error_kind::http_status) {
                ++s.http_status[r.status];
            }
            auto& n = sampled[static_cast<std::size_t>(r.error)];
            if (n < 2 && s.error_samples.size() < max_error_samples) {
                ++n;
                s.error_samples.push_back(fmt::format("{}{}: {}", to_string(r.error),
                                                      r.status != 0 ? fmt::format(" {}", r.status) : "",
                                                      r.error_detail.substr(0, 200)));
            }
            continue;
        }
        ++s.completed;
        s.total_input_tokens += r.usage_prompt_tokens >= 0 ? r.usage_prompt_tokens : r.prompt_words;
        // The server's count when it gave one: a streamed event may carry
        // several tokens (a reader that fell behind, speculative decoding).
        const long tokens = r.usage_completion_tokens >= 0 ? static_cast<long>(r.usage_completion_tokens)
                                                           : static_cast<long>(r.output_tokens);
        s.total_output_tokens += tokens;
        ttfts.push_back(r.ttft_s);
        e2els.push_back(r.e2e_s);
        double tpot = 0;
        if (tokens > 1) {
            tpot = (r.e2e_s - r.ttft_s) / static_cast<double>(tokens - 1);
            tpots.push_back(tpot);
        }
        if (cfg.stream) {
            max_itls.push_back(r.max_itl_s);
        }
        // Short of max_tokens: fewer tokens than asked by the server's
        // count; without one, events are counted, which may each carry
        // several tokens (a character split across tokens is sent whole),
        // so a "length" finish says max_tokens was reached.
        const bool reached = tokens >= cfg.max_tokens ||
                             (r.usage_completion_tokens < 0 && r.finish_reason == "length");
        if (!reached) {
            ++s.incomplete_outputs;
        }
        if (cfg.stream && r.usage_completion_tokens >= 0 && r.usage_completion_tokens != r.output_tokens) {
            ++s.usage_mismatches;
        }
        ++s.finish_reasons[r.finish_reason.empty() ? "none" : r.finish_reason];
        const bool good = (!cfg.slo_ttft_ms || r.ttft_s * 1e3 <= *cfg.slo_ttft_ms) &&
                          (!cfg.slo_tpot_ms || tpot * 1e3 <= *cfg.slo_tpot_ms) &&
                          (!cfg.slo_e2e_ms || r.e2e_s * 1e3 <= *cfg.slo_e2e_ms);
        good_requests += good ? 1 : 0;
    }
    const double dur = duration_s > 0 ? duration_s : 1;
    s.request_throughput = static_cast<double>(s.completed) / dur;
    s.output_throughput = static_cast<double>(s.total_output_tokens) / dur;
    s.total_token_throughput = static_cast<double>(s.total_input_tokens + s.total_output_tokens) / dur;
    if (cfg.slo_ttft_ms || cfg.slo_tpot_ms || cfg.slo_e2e_ms) {
        s.request_goodput = static_cast<double>(good_requests) / dur;
    }
    s.ttft = summarize_ms(ttfts);
    s.tpot = summarize_ms(tpots);
    s.itl = summarize_ms(itls);
    s.e2el = summarize_ms(e2els);
    s.max_itl = summarize_ms(max_itls);
    s.queue_wait = summarize_ms(waits);
    s.connect = summarize_ms(connects);
    return s;
}

void print_report(std::FILE* out, const summary& s, const run_config& cfg) {
    fmt::print(out, "{:=^50}\n", " Serving Benchmark Result ");
    if (!cfg.label.empty()) {
        fmt::print(out, "{:<40} {}\n", "Label:", cfg.label);
    }
    fmt::print(out, "{:<40} {}\n", "Load:",
               cfg.rate > 0 ? fmt::format("rate {} req/s (Poisson), <= {} connections", cfg.rate, cfg.max_connections)
                            : fmt::format("concurrency {} (closed loop)", cfg.concurrency));
    fmt::print(out, "{:<40} {}\n", "Successful requests:", s.completed);
    fmt::print(out, "{:<40} {}\n", "Failed requests:", s.failed);
    row(out, "Benchmark duration (s):", s.duration_s);
    fmt::print(out, "{:<40} {}\n", "Total input tokens:", s.total_input_tokens);
    fmt::print(out, "{:<40} {}\n", "Total generated tokens:", s.total_output_tokens);
    row(out, "Request throughput (req/s):", s.request_throughput);
    if (s.request_goodput) {
        row(out, "Request goodput (req/s):", *s.request_goodput);
    }
    row(out, "Output token throughput (tok/s):", s.output_throughput);
    row(out, "Total token throughput (tok/s):", s.total_token_throughput);
    rule(out, "Time to First Token");
    distribution_rows(out, "TTFT", s.ttft, false);
    if (cfg.stream) {
        rule(out, "Time per Output Token (excl. 1st token)");
        distribution_rows(out, "TPOT", s.tpot, false);
        rule(out, "Inter-token Latency");
        distribution_rows(out, "ITL", s.itl, true);
    }
    rule(out, "End-to-end Latency");
    distribution_rows(out, "E2EL", s.e2el, false);
    if (cfg.rate > 0) {
        rule(out, "Queueing (arrival to send)");
        row(out, "Mean wait (ms):", s.queue_wait.mean);
        row(out, "P99 wait (ms):", s.queue_wait.p99);
    }
    if (s.failed > 0 || s.incomplete_outputs > 0) {
        rule(out, "Errors");
        for (int k = 1; k < error_kind_count; ++k) {
            if (const long n = s.errors[static_cast<std::size_t>(k)]; n > 0) {
                fmt::print(out, "{:<40} {}\n", fmt::format("{}:", to_string(static_cast<error_kind>(k))), n);
            }
        }
        for (const auto& [code, n] : s.http_status) {
            fmt::print(out, "{:<40} {}\n", fmt::format("  HTTP {}:", code), n);
        }
        if (s.incomplete_outputs > 0) {
            fmt::print(out, "{:<40} {}\n", "Outputs short of max_tokens:", s.incomplete_outputs);
        }
        for (const std::string& line : s.error_samples) {
            fmt::print(out, "  e.g. {}\n", line);
        }
    }
    if (s.usage_mismatches > 0) {
        // Not an error: an event may carry several tokens; the counts above use the server's usage.
        fmt::print(out, "{:<40} {}\n", "Streams with multi-token events:", s.usage_mismatches);
    }
    fmt::print(out, "{}\n", std::string(50, '='));
}

nlohmann::json to_json(const summary& s, const run_config& cfg, const std::vector<request_record>* per_request) {
    nlohmann::json config = {
        {"host", cfg.host},
        {"port", cfg.port},
        {"endpoint", cfg.endpoint},
        {"model", cfg.model},
        {"prompt_tokens", cfg.prompt_tokens},
        {"shared_prefix_tokens", cfg.shared_prefix},
        {"max_tokens", cfg.max_tokens},
        {"requests", cfg.requests},
        {"duration_s", cfg.duration_s},
        {"mode", cfg.rate > 0 ? "rate" : "concurrency"},
        {"concurrency", cfg.concurrency},
        {"rate", cfg.rate},
        {"max_connections", cfg.max_connections},
        {"stream", cfg.stream},
        {"stream_usage", cfg.stream_usage},
        {"ignore_eos", cfg.ignore_eos},
        {"threads", cfg.threads},
        {"timeout_s", cfg.timeout_s},
        {"seed", cfg.seed},
        {"warmup", cfg.warmup},
        {"goodput_ttft_ms", optional_json(cfg.slo_ttft_ms)},
        {"goodput_tpot_ms", optional_json(cfg.slo_tpot_ms)},
        {"goodput_e2e_ms", optional_json(cfg.slo_e2e_ms)},
    };
    nlohmann::json errors = nlohmann::json::object();
    for (int k = 1; k < error_kind_count; ++k) {
        errors[to_string(static_cast<error_kind>(k))] = s.errors[static_cast<std::size_t>(k)];
    }
    nlohmann::json statuses = nlohmann::json::object();
    for (const auto& [code, n] : s.http_status) {
        statuses[std::to_string(code)] = n;
    }
    errors["http_status_codes"] = std::move(statuses);
    errors["samples"] = s.error_samples;

    nlohmann::json j = {
        {"label", cfg.label},
        {"config", std::move(config)},
        {"duration_s", s.duration_s},
        {"issued", s.issued},
        {"completed", s.completed},
        {"failed", s.failed},
        {"total_input_tokens", s.total_input_tokens},
        {"total_output_tokens", s.total_output_tokens},
        {"request_throughput", s.request_throughput},
        {"request_goodput", optional_json(s.request_goodput)},
        {"output_throughput", s.output_throughput},
        {"total_token_throughput", s.total_token_throughput},
        {"ttft_ms", distribution_json(s.ttft)},
        {"tpot_ms", distribution_json(s.tpot)},
        {"itl_ms", distribution_json(s.itl)},
        {"e2el_ms", distribution_json(s.e2el)},
        {"request_max_itl_ms", distribution_json(s.max_itl)},
        {"queue_wait_ms", distribution_json(s.queue_wait)},
        {"connect_ms", distribution_json(s.connect)},
        {"finish_reasons", s.finish_reasons},
        {"incomplete_outputs", s.incomplete_outputs},
        {"usage_mismatches", s.usage_mismatches},
        {"errors", std::move(errors)},
    };
    if (per_request != nullptr) {
        nlohmann::json rows = nlohmann::json::array();
        for (const request_record& r : *per_request) {
            nlohmann::json row = {
                {"index", r.index},       {"arrival_s", r.arrival_s},   {"start_s", r.start_s},
                {"status", r.status},     {"error", to_string(r.error)}, {"ttft_ms", r.ttft_s * 1e3},
                {"e2e_ms", r.e2e_s * 1e3}, {"max_itl_ms", r.max_itl_s * 1e3}, {"output_tokens", r.output_tokens},
                {"finish_reason", r.finish_reason},
            };
            if (r.connect_s >= 0) {
                row["connect_ms"] = r.connect_s * 1e3;
            }
            if (!r.error_detail.empty()) {
                row["error_detail"] = r.error_detail.substr(0, 200);
            }
            rows.push_back(std::move(row));
        }
        j["per_request"] = std::move(rows);
    }
    return j;
}

} // namespace weft::loadgen
