// weft_bench_micro: the driver. Runs every registered benchmark (Google
// Benchmark flags apply, e.g. --benchmark_filter, --benchmark_out=<file>
// --benchmark_out_format=json), captures the results with a ConsoleReporter
// subclass, then prints the weft-vs-peer comparison table and writes it to
// $WEFT_BENCH_SUMMARY (default: ./bench-micro-summary.json).
//
// Ratio column: how many times better weft is than the peer (peer time / weft
// time for "lower is better" metrics, weft rate / peer rate for throughput),
// so > 1 always means weft wins.

#include <benchmark/benchmark.h>
#include <fmt/core.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

// --- result capture -------------------------------------------------------------

namespace {

struct captured {
    double real_ns = 0; // per iteration
    double cpu_ns = 0;  // per iteration
    std::int64_t iterations = 0;
    std::map<std::string, double> counters;
    bool from_median = false;
};

/// Prints like the normal console reporter and keeps, per benchmark (keyed by
/// its registered name), the last run, or the median aggregate when
/// --benchmark_repetitions is used.
class capturing_reporter : public benchmark::ConsoleReporter {
public:
    using benchmark::ConsoleReporter::ConsoleReporter;

    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& r : runs) {
            if (r.error_occurred) {
                continue;
            }
            const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
            if (r.run_type == Run::RT_Aggregate && !median) {
                continue;
            }
            captured& slot = m_results[r.run_name.function_name];
            if (!median && slot.from_median) {
                continue;
            }
            const double to_ns = 1e9 / benchmark::GetTimeUnitMultiplier(r.time_unit);
            slot.real_ns = r.GetAdjustedRealTime() * to_ns;
            slot.cpu_ns = r.GetAdjustedCPUTime() * to_ns;
            slot.iterations = r.iterations;
            slot.from_median = median;
            slot.counters.clear();
            for (const auto& [name, counter] : r.counters) {
                slot.counters[name] = counter.value;
            }
        }
        benchmark::ConsoleReporter::ReportRuns(runs);
    }

    [[nodiscard]] std::optional<double> counter(const std::string& bench,
                                                const std::string& name) const {
        auto it = m_results.find(bench);
        if (it == m_results.end()) {
            return std::nullopt;
        }
        auto c = it->second.counters.find(name);
        if (c == it->second.counters.end()) {
            return std::nullopt;
        }
        return c->second;
    }

private:
    std::map<std::string, captured> m_results;
};

// --- comparisons ----------------------------------------------------------------

enum class better { lower, higher };

struct metric {
    const char* bench;   // registered benchmark name
    const char* counter; // user counter of that benchmark
};

struct comparison {
    const char* name;
    const char* unit;
    better direction;
    metric weft;
    std::optional<metric> peer;
    const char* goal; // "-" when informational
    // Goal check on (weft value, ratio); absent: informational row.
    bool (*met)(double weft, std::optional<double> ratio) = nullptr;
};

const std::vector<comparison>& comparisons() {
    static const std::vector<comparison> rows = {
        {"chain1000: weft recycling vs asio::awaitable", "ns/frame", better::lower,
         {"chain1000/weft_recycling", "ns_per_frame"},
         metric{"chain1000/asio_awaitable", "ns_per_frame"}, "<= 25 ns & >= 2x",
         [](double w, std::optional<double> r) { return w <= 25.0 && r && *r >= 2.0; }},
        {"chain1000: weft default alloc vs asio::awaitable", "ns/frame", better::lower,
         {"chain1000/weft_default", "ns_per_frame"},
         metric{"chain1000/asio_awaitable", "ns_per_frame"}, "-"},
        {"chain1000: recycling vs default alloc (time)", "ns/frame", better::lower,
         {"chain1000/weft_recycling", "ns_per_frame"},
         metric{"chain1000/weft_default", "ns_per_frame"}, "-"},
        {"chain1000: recycling vs default alloc (heap)", "allocs/frame", better::lower,
         {"chain1000/weft_recycling", "allocs_per_frame"},
         metric{"chain1000/weft_default", "allocs_per_frame"}, "-"},
        {"pool: spawn+join 1M empty tasks vs asio::post", "tasks/s", better::higher,
         {"pool_spawn_1M/weft_async_scope", "tasks_per_s"},
         metric{"pool_spawn_1M/asio_post", "tasks_per_s"}, ">= 2x",
         [](double, std::optional<double> r) { return r && *r >= 2.0; }},
        {"pool: post 1M coroutine handles vs asio::post", "tasks/s", better::higher,
         {"pool_spawn_1M/weft_post_handles", "tasks_per_s"},
         metric{"pool_spawn_1M/asio_post", "tasks_per_s"}, "-"},
        {"pool: fib(25) tasks vs asio co_spawn+parallel_group", "tasks/s", better::higher,
         {"pool_fib25/weft_when_all", "tasks_per_s"},
         metric{"pool_fib25/asio_parallel_group", "tasks_per_s"}, ">= 2x",
         [](double, std::optional<double> r) { return r && *r >= 2.0; }},
        {"pool: fib(25) with frame recycling vs asio", "tasks/s", better::higher,
         {"pool_fib25/weft_when_all_recycling", "tasks_per_s"},
         metric{"pool_fib25/asio_parallel_group", "tasks_per_s"}, "-"},
        {"async_mutex uncontended vs std::mutex", "ns/op", better::lower,
         {"mutex/weft_async_mutex_uncontended", "ns_per_op"},
         metric{"mutex/std_mutex_uncontended", "ns_per_op"}, "-"},
        {"async_mutex contended (2 workers) vs std::mutex (2 threads)", "ns/op", better::lower,
         {"mutex/weft_async_mutex_contended", "ns_per_op"},
         metric{"mutex/std_mutex_contended", "ns_per_op"}, "-"},
        {"channel<int> ping-pong vs asio concurrent_channel", "ns/round trip", better::lower,
         {"channel_pingpong/weft_channel", "ns_per_round_trip"},
         metric{"channel_pingpong/asio_concurrent_channel", "ns_per_round_trip"}, "-"},
    };
    return rows;
}

struct row {
    std::string name;
    std::string unit;
    std::optional<double> weft;
    std::optional<double> peer;
    std::optional<double> ratio;
    std::string goal;
    std::optional<bool> met; // absent: informational or not measured
    bool has_goal = false;
};

std::vector<row> build_rows(const capturing_reporter& rep) {
    std::vector<row> out;
    for (const comparison& c : comparisons()) {
        row r;
        r.name = c.name;
        r.unit = c.unit;
        r.goal = c.goal;
        r.has_goal = c.met != nullptr;
        r.weft = rep.counter(c.weft.bench, c.weft.counter);
        if (c.peer) {
            r.peer = rep.counter(c.peer->bench, c.peer->counter);
        }
        if (r.weft && r.peer && *r.weft > 0 && *r.peer > 0) {
            r.ratio = c.direction == better::lower ? *r.peer / *r.weft : *r.weft / *r.peer;
        }
        if (c.met != nullptr && r.weft) {
            r.met = c.met(*r.weft, r.ratio);
        }
        out.push_back(std::move(r));
    }
    return out;
}

std::string format_value(std::optional<double> v, const std::string& unit) {
    if (!v) {
        return "n/a";
    }
    const double x = *v;
    if (unit == "tasks/s") {
        if (x >= 1e6) {
            return fmt::format("{:.2f} M/s", x / 1e6);
        }
        return fmt::format("{:.1f} k/s", x / 1e3);
    }
    if (unit == "allocs/frame") {
        return fmt::format("{:.3f}", x);
    }
    const char* suffix = unit.rfind("ns", 0) == 0 ? " ns" : "";
    if (x >= 100) {
        return fmt::format("{:.0f}{}", x, suffix);
    }
    return fmt::format("{:.1f}{}", x, suffix);
}

std::string met_text(const row& r) {
    if (!r.has_goal) {
        return "-";
    }
    if (!r.met) {
        return "n/a";
    }
    return *r.met ? "yes" : "NO";
}

void print_table(const std::vector<row>& rows) {
    struct cells {
        std::string c[6];
    };
    std::vector<cells> lines;
    lines.push_back({{"comparison", "weft", "peer", "ratio", "goal", "met?"}});
    for (const row& r : rows) {
        lines.push_back({{fmt::format("{} [{}]", r.name, r.unit), format_value(r.weft, r.unit),
                          format_value(r.peer, r.unit),
                          r.ratio ? fmt::format("{:.2f}x", *r.ratio) : std::string("-"), r.goal,
                          met_text(r)}});
    }
    std::size_t width[6] = {};
    for (const cells& l : lines) {
        for (int i = 0; i < 6; ++i) {
            width[i] = std::max(width[i], l.c[i].size());
        }
    }
    std::string out = "\n";
    for (std::size_t n = 0; n < lines.size(); ++n) {
        const cells& l = lines[n];
        out += fmt::format("{:<{}} | {:>{}} | {:>{}} | {:>{}} | {:<{}} | {}\n", l.c[0], width[0],
                           l.c[1], width[1], l.c[2], width[2], l.c[3], width[3], l.c[4], width[4],
                           l.c[5]);
        if (n == 0) {
            std::size_t total = 0;
            for (std::size_t w : width) {
                total += w + 3;
            }
            out += std::string(total - 3, '-') + "\n";
        }
    }
    out += "ratio = how many times better weft is than the peer (> 1: weft wins)\n";
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
}

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (char ch : s) {
        switch (ch) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        default:
            if (static_cast<unsigned char>(ch) < 0x20) {
                out += fmt::format("\\u{:04x}", static_cast<unsigned>(ch));
            } else {
                out += ch;
            }
        }
    }
    return out + "\"";
}

std::string json_number(std::optional<double> v) {
    if (!v || !std::isfinite(*v)) {
        return "null";
    }
    return fmt::format("{}", *v);
}

/// The 1-minute load average, or a negative value when unknown.
double load_average() {
    double load[1] = {-1.0};
    return getloadavg(load, 1) == 1 ? load[0] : -1.0;
}

bool write_summary(const std::vector<row>& rows, const std::string& path, double load_before,
                   double load_after) {
    bool all_met = true;
    std::string out = "{\n  \"rows\": [\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const row& r = rows[i];
        if (r.has_goal && !(r.met && *r.met)) {
            all_met = false;
        }
        out += fmt::format(
            "    {{\"comparison\": {}, \"unit\": {}, \"weft\": {}, \"peer\": {}, "
            "\"ratio\": {}, \"goal\": {}, \"met\": {}}}{}\n",
            json_string(r.name), json_string(r.unit), json_number(r.weft), json_number(r.peer),
            json_number(r.ratio), r.has_goal ? json_string(r.goal) : "null",
            r.met ? (*r.met ? "true" : "false") : "null", i + 1 < rows.size() ? "," : "");
    }
    out += fmt::format("  ],\n  \"ratio_meaning\": {},\n  \"load_average_before\": {},\n"
                       "  \"load_average_after\": {},\n  \"all_goals_met\": {}\n}}\n",
                       json_string("times better than the peer; > 1 means weft wins"),
                       json_number(load_before >= 0 ? std::optional(load_before) : std::nullopt),
                       json_number(load_after >= 0 ? std::optional(load_after) : std::nullopt),
                       all_met ? "true" : "false");
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) {
        std::fprintf(stderr, "weft_bench_micro: cannot write %s\n", path.c_str());
        return all_met;
    }
    std::fputs(out.c_str(), f);
    std::fclose(f);
    std::printf("summary written to %s\n", path.c_str());
    return all_met;
}

} // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    const bool color = isatty(STDOUT_FILENO) != 0 && std::getenv("NO_COLOR") == nullptr;
    capturing_reporter reporter(color ? benchmark::ConsoleReporter::OO_ColorTabular
                                      : benchmark::ConsoleReporter::OO_Tabular);
    // Make the process multi-threaded before anything runs, whatever the
    // filter: glibc drops the lock prefix of std::mutex (and other atomics)
    // in a process that never started a thread, which would make the
    // std::mutex reference numbers depend on which benchmarks ran before.
    std::thread([] {}).join();

    const double load_before = load_average();
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    const double load_after = load_average();

    const std::vector<row> rows = build_rows(reporter);
    print_table(rows);
    if (load_before >= 0 && load_after >= 0) {
        // Wall-clock results, the thread-pool ones especially, are only
        // meaningful on an otherwise idle machine.
        std::printf("load average (1 min) before/after: %.2f / %.2f on %u hardware threads\n",
                    load_before, load_after, std::thread::hardware_concurrency());
    }
    const char* env = std::getenv("WEFT_BENCH_SUMMARY");
    const bool all_met =
        write_summary(rows, env != nullptr && *env != '\0' ? env : "bench-micro-summary.json",
                      load_before, load_after);
    // Missed goals are reported, not fatal, unless WEFT_BENCH_STRICT=1.
    const char* strict = std::getenv("WEFT_BENCH_STRICT");
    return strict != nullptr && std::string(strict) == "1" && !all_met ? 2 : 0;
}
