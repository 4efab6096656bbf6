#include <weft/serve/metrics.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace weft::serve {

std::string_view to_string(finish_reason r) noexcept {
    switch (r) {
    case finish_reason::stop: return "stop";
    case finish_reason::length: return "length";
    case finish_reason::aborted: return "abort";
    case finish_reason::timeout: return "timeout";
    case finish_reason::error: return "error";
    }
    return "unknown";
}

histogram::histogram(std::vector<double> bounds) : m_bounds(std::move(bounds)), m_counts(m_bounds.size() + 1) {
    std::sort(m_bounds.begin(), m_bounds.end());
}

void histogram::observe(double value) { observe_many(std::span(&value, 1)); }

void histogram::observe_many(std::span<const double> values) {
    if (values.empty()) return;
    std::lock_guard lock(m_mutex);
    for (const double v : values) {
        ++m_counts[static_cast<std::size_t>(std::lower_bound(m_bounds.begin(), m_bounds.end(), v) - m_bounds.begin())];
        m_sum += v;
    }
    m_count += values.size();
}

std::uint64_t histogram::count() const {
    std::lock_guard lock(m_mutex);
    return m_count;
}

double histogram::sum() const {
    std::lock_guard lock(m_mutex);
    return m_sum;
}

void histogram::render(std::string& out, std::string_view name, std::string_view help) const {
    std::vector<std::uint64_t> counts;
    double sum = 0;
    std::uint64_t count = 0;
    {
        std::lock_guard lock(m_mutex);
        counts = m_counts;
        sum = m_sum;
        count = m_count;
    }
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < m_bounds.size(); ++i) {
        cumulative += counts[i];
        fmt::format_to(std::back_inserter(out), "{}_bucket{{le=\"{}\"}} {}\n", name, m_bounds[i], cumulative);
    }
    cumulative += counts.back();
    fmt::format_to(std::back_inserter(out), "{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, cumulative,
                   name, sum, name, count);
}

namespace {
std::vector<double> latency_bounds() {
    return {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0};
}

/// A forward step: 100 us (a tiny model's decode) to seconds (a long prompt).
std::vector<double> step_bounds() {
    return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};
}
std::vector<double> token_bounds() {
    return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
}
} // namespace

serve_metrics::serve_metrics()
    : time_to_first_token(latency_bounds()), inter_token_latency(latency_bounds()), e2e_latency(latency_bounds()),
      queue_time(latency_bounds()), step_compute(step_bounds()), step_tokens(token_bounds()) {}

namespace {
/// A label value in the text format: backslash, double quote and line feed escaped.
std::string escape_label(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == '\\' || c == '"') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}
} // namespace

std::string serve_metrics::render(std::string_view raw_model_name) const {
    const std::string model_name = escape_label(raw_model_name);
    std::string out;
    auto gauge = [&](std::string_view name, std::string_view help, std::size_t v) {
        fmt::format_to(std::back_inserter(out), "# HELP weft_{} {}\n# TYPE weft_{} gauge\nweft_{}{{model=\"{}\"}} {}\n",
                       name, help, name, name, model_name, v);
    };
    auto counter = [&](std::string_view name, std::string_view help, std::uint64_t v) {
        fmt::format_to(std::back_inserter(out),
                       "# HELP weft_{} {}\n# TYPE weft_{} counter\nweft_{}{{model=\"{}\"}} {}\n", name, help, name,
                       name, model_name, v);
    };
    constexpr auto relaxed = std::memory_order_relaxed;
    gauge("requests_running", "Requests in the running batch.", requests_running.load(relaxed));
    gauge("requests_waiting", "Requests waiting to be scheduled.", requests_waiting.load(relaxed));
    gauge("kv_blocks_used", "KV-cache blocks held by requests.", kv_blocks_used.load(relaxed));
    gauge("kv_blocks_total", "KV-cache blocks in all.", kv_blocks_total.load(relaxed));
    gauge("kv_blocks_cached", "KV-cache blocks kept by the prefix cache that no request holds (freed on demand).",
          kv_blocks_cached.load(relaxed));
    counter("prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.",
            prefix_cache_queries.load(relaxed));
    counter("prefix_cache_hits_total", "Prompt tokens found in the prefix cache (not computed).",
            prefix_cache_hits.load(relaxed));
    counter("spec_decode_draft_tokens_total", "Speculative (n-gram) tokens proposed and computed.",
            spec_draft_tokens.load(relaxed));
    counter("spec_decode_accepted_tokens_total", "Speculative tokens the model agreed with (kept).",
            spec_accepted_tokens.load(relaxed));
    counter("preemptions_total", "Sequences preempted (blocks freed, recomputed later).", preemptions.load(relaxed));
    counter("requests_rejected_total", "Requests refused with 429 because the waiting queue was full.",
            rejected.load(relaxed));
    counter("prompt_tokens_total", "Prompt tokens of admitted requests.", prompt_tokens.load(relaxed));
    counter("generation_tokens_total", "Tokens generated.", generation_tokens.load(relaxed));
    counter("engine_steps_total", "Forward steps run.", steps.load(relaxed));
    out += "# HELP weft_requests_finished_total Requests finished, by reason.\n"
           "# TYPE weft_requests_finished_total counter\n";
    for (std::size_t i = 0; i < finished.size(); ++i) {
        fmt::format_to(std::back_inserter(out), "weft_requests_finished_total{{model=\"{}\",reason=\"{}\"}} {}\n",
                       model_name, to_string(static_cast<finish_reason>(i)), finished[i].load(relaxed));
    }
    time_to_first_token.render(out, "weft_time_to_first_token_seconds", "Arrival to first generated token.");
    inter_token_latency.render(out, "weft_inter_token_latency_seconds", "Time between consecutive tokens of a request.");
    e2e_latency.render(out, "weft_e2e_request_latency_seconds", "Arrival to the last token.");
    queue_time.render(out, "weft_request_queue_time_seconds", "Arrival to first scheduled step.");
    step_compute.render(out, "weft_engine_step_compute_seconds",
                        "Backend time per forward step (the rest of a step's period is the engine's own work).");
    step_tokens.render(out, "weft_engine_step_tokens", "Tokens (prompt and decode) per forward step.");
    return out;
}

} // namespace weft::serve
