// The scheduler's cost per step against the depth of its waiting queue: a
// server under a backlog keeps thousands of requests waiting while it admits
// a few per step, and the step's bookkeeping runs between two model steps
// (nothing overlaps it). Each depth is compared with the smallest in the
// same run, at the same running count: a ratio near 1 means a longer
// backlog costs nothing per step.
//
//   weft-scheduler-bench [--depths 64 1024 4096] [--steps 20000] [--rounds 5] [--json out.json]
//
// The load is goal 1's, without the model: 16-token prompts, 16 new tokens
// each, room for 1024 running, so the prefill cap (the defaults: one prompt
// token per decoding stream) decides admissions and every step admits a
// few; every finished sequence is replaced by a new arrival, so the queue
// stays at its depth. Priorities cycle over three classes, aging is on.

#include <weft/serve/scheduler.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace weft::serve;

namespace {

/// Nanoseconds per step (schedule, commit, finishing and replacing the done
/// sequences) with `depth` requests waiting.
double ns_per_step(std::size_t depth, std::size_t steps) {
    scheduler_config cfg;
    cfg.max_running = 1024;
    cfg.max_batch_tokens = 4096;
    cfg.max_waiting = depth + 256;
    cfg.prefix_caching = false;
    scheduler s(cfg, 8192, 16);
    seq_id next = 1;
    auto arrive = [&] {
        sequence_request r;
        r.id = next;
        r.prompt.assign(16, static_cast<token_id>(next % 100));
        r.max_new_tokens = 16;
        r.priority = static_cast<int>(next % 3);
        ++next;
        if (s.add(std::move(r)) != admit_result::accepted) throw std::runtime_error("scheduler refused a request");
    };
    // 128 start running at once (a step without decodes takes any prefill
    // that fits the batch); with prompts as long as the outputs, admissions
    // under the cap then balance completions there, and the queue holds
    // `depth` behind them.
    for (std::size_t i = 0; i < 128; ++i) arrive();

    std::vector<token_id> sampled;
    std::vector<seq_id> done;
    auto step = [&] {
        const step_plan plan = s.schedule();
        sampled.clear();
        done.clear();
        for (const scheduled_chunk& c : plan.chunks) {
            if (c.samples) sampled.push_back(1);
        }
        s.commit(plan, sampled);
        for (const scheduled_chunk& c : plan.chunks) {
            if (c.samples && s.num_generated(c.id) >= 16) done.push_back(c.id);
        }
        for (seq_id id : done) {
            s.finish(id);
            arrive();
        }
    };
    step();
    for (std::size_t i = 0; i < depth; ++i) arrive();
    for (std::size_t i = 0; i < 200; ++i) step(); // reach the steady mix of prefills and decodes
    if (s.num_waiting() < depth / 2) throw std::runtime_error("the backlog drained: the load does not hold its depth");
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < steps; ++i) step();
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(steps);
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"scheduler cost per step against the depth of the waiting queue"};
    std::vector<std::size_t> depths{64, 256, 1024, 4096};
    std::size_t steps = 20000;
    std::size_t rounds = 5;
    std::string json_path = "build/bench-scheduler.json";
    app.add_option("--depths", depths, "waiting-queue depths (the smallest is the reference)")
        ->check(CLI::PositiveNumber);
    app.add_option("--steps", steps, "steps per measurement")->capture_default_str()->check(CLI::PositiveNumber);
    app.add_option("--rounds", rounds, "rounds over the depths (medians over all)")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--json", json_path)->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    std::sort(depths.begin(), depths.end());
    depths.erase(std::unique(depths.begin(), depths.end()), depths.end());

    // Rounds interleave the depths so that a slow moment of the machine hits
    // them all alike; each depth reports its median.
    std::vector<std::vector<double>> samples(depths.size());
    for (std::size_t r = 0; r < rounds; ++r) {
        for (std::size_t i = 0; i < depths.size(); ++i) samples[i].push_back(ns_per_step(depths[i], steps));
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    const double reference = median(samples[0]);
    nlohmann::json rows = nlohmann::json::array();
    fmt::print("{:>8} {:>12} {:>10}\n", "waiting", "us per step", fmt::format("x {}", depths[0]));
    for (std::size_t i = 0; i < depths.size(); ++i) {
        const double ns = median(samples[i]);
        fmt::print("{:>8} {:>12.2f} {:>9.2f}x\n", depths[i], ns / 1000.0, ns / reference);
        rows.push_back({{"waiting", depths[i]}, {"ns_per_step", ns}, {"ratio_to_smallest", ns / reference}});
    }
    nlohmann::json report{{"max_running", 1024}, {"steps", steps}, {"rounds", rounds}, {"depths", rows}};
    std::ofstream(json_path) << report.dump(2) << '\n';
    fmt::print("wrote {}\n", json_path);
}
