/// \file
/// `serve_metrics`: the serving engine's counters, gauges and latency
/// histograms, rendered in the Prometheus text exposition format.
///
/// Counters and gauges are atomics; each histogram has its own small mutex.
/// The engine thread updates most of them, HTTP threads count rejections,
/// and a scrape renders a consistent-enough snapshot (each value is read
/// once; no global lock, as in every Prometheus client).
///
/// Lifetime: owned by the engine. Threading: every member is thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace weft::serve {

/// A cumulative histogram with fixed upper bounds (seconds, or a count).
class histogram {
public:
    explicit histogram(std::vector<double> bounds);
    void observe(double value);
    /// `observe` for each value, under one lock.
    void observe_many(std::span<const double> values);
    /// Appends the _bucket/_sum/_count lines of metric `name`.
    void render(std::string& out, std::string_view name, std::string_view help) const;
    [[nodiscard]] std::uint64_t count() const;
    [[nodiscard]] double sum() const;

private:
    std::vector<double> m_bounds;
    mutable std::mutex m_mutex;
    std::vector<std::uint64_t> m_counts; // per bound, plus +Inf
    double m_sum = 0.0;
    std::uint64_t m_count = 0;
};

enum class finish_reason : unsigned char { stop, length, aborted, timeout, error };
std::string_view to_string(finish_reason r) noexcept;

class serve_metrics {
public:
    serve_metrics();

    // Gauges, set by the engine after each step.
    std::atomic<std::size_t> requests_running{0};
    std::atomic<std::size_t> requests_waiting{0};
    std::atomic<std::size_t> kv_blocks_used{0};
    std::atomic<std::size_t> kv_blocks_total{0};
    std::atomic<std::size_t> kv_blocks_cached{0}; ///< prefix-cache blocks no request holds

    // Counters.
    std::atomic<std::uint64_t> preemptions{0};
    std::atomic<std::uint64_t> rejected{0};          ///< 429: waiting queue full
    std::atomic<std::uint64_t> prompt_tokens{0};
    std::atomic<std::uint64_t> generation_tokens{0};
    std::atomic<std::uint64_t> steps{0};
    std::atomic<std::uint64_t> prefix_cache_queries{0}; ///< tokens looked up (set by the engine)
    std::atomic<std::uint64_t> prefix_cache_hits{0};    ///< tokens found cached
    std::atomic<std::uint64_t> spec_draft_tokens{0};    ///< speculative tokens computed (set by the engine)
    std::atomic<std::uint64_t> spec_accepted_tokens{0}; ///< of those, the ones the model agreed with
    std::array<std::atomic<std::uint64_t>, 5> finished{}; ///< by finish_reason

    histogram time_to_first_token;   ///< seconds, arrival to first token
    histogram inter_token_latency;   ///< seconds between tokens of one request
    histogram e2e_latency;           ///< seconds, arrival to finish
    histogram queue_time;            ///< seconds, arrival to first scheduled
    histogram step_compute;          ///< seconds the backend computed each forward step
    histogram step_tokens;           ///< tokens (prompt and decode) in each forward step

    void count_finished(finish_reason r) noexcept {
        finished[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
    }

    /// The Prometheus text format of everything above, names prefixed "weft_".
    [[nodiscard]] std::string render(std::string_view model_name) const;
};

} // namespace weft::serve
