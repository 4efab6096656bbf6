#include "loadgen_report.hpp"

#include <catch2/catch.hpp>

#include <vector>

using namespace weft::loadgen;

namespace {

request_record ok(double ttft, double e2e, int tokens, double max_itl = 0) {
    request_record r;
    r.ttft_s = ttft;
    r.e2e_s = e2e;
    r.output_tokens = tokens;
    r.max_itl_s = max_itl;
    r.prompt_words = 10;
    r.finish_reason = "length";
    return r;
}

request_record stopped(request_record r) {
    r.finish_reason = "stop";
    return r;
}

request_record failed(error_kind kind, int status = 0) {
    request_record r;
    r.error = kind;
    r.status = status;
    r.error_detail = "detail";
    return r;
}

} // namespace

TEST_CASE("percentile interpolates linearly between order statistics", "[loadgen][report]") {
    const std::vector<double> v = {1, 2, 3, 4};
    CHECK(percentile(v, 0) == Approx(1));
    CHECK(percentile(v, 50) == Approx(2.5));
    CHECK(percentile(v, 90) == Approx(3.7));
    CHECK(percentile(v, 100) == Approx(4));
    CHECK(percentile({}, 50) == 0);
    CHECK(percentile({7}, 99) == Approx(7));
}

TEST_CASE("summary distribution reports milliseconds with population std", "[loadgen][report]") {
    std::vector<double> s = {0.004, 0.001, 0.003, 0.002};
    const distribution d = summarize_ms(s);
    CHECK(d.count == 4);
    CHECK(d.mean == Approx(2.5));
    CHECK(d.median == Approx(2.5));
    CHECK(d.max == Approx(4));
    CHECK(d.std == Approx(1.118034).epsilon(1e-5));
}

TEST_CASE("run summary computes TPOT, throughput and goodput as vLLM does", "[loadgen][report]") {
    run_config cfg;
    cfg.max_tokens = 11;
    cfg.slo_ttft_ms = 50;
    cfg.slo_tpot_ms = 10;
    const std::vector<request_record> records = {
        ok(0.010, 0.110, 11, 0.02), // TPOT 10 ms: good
        ok(0.060, 0.160, 11, 0.03), // TTFT over: not good
        ok(0.010, 0.210, 11, 0.05), // TPOT 20 ms: not good
        stopped(ok(0.020, 0.020, 1)), // one token: TPOT counts as 0, good; short of max_tokens
        failed(error_kind::http_status, 503),
        failed(error_kind::reset),
    };
    const summary s = summarize_run(records, {0.01, 0.02, 0.03}, 2.0, cfg);
    CHECK(s.issued == 6);
    CHECK(s.completed == 4);
    CHECK(s.failed == 2);
    CHECK(s.total_output_tokens == 34);
    CHECK(s.total_input_tokens == 40);
    CHECK(s.request_throughput == Approx(2.0));
    CHECK(s.output_throughput == Approx(17.0));
    CHECK(s.total_token_throughput == Approx(37.0));
    REQUIRE(s.request_goodput);
    CHECK(*s.request_goodput == Approx(1.0));
    CHECK(s.tpot.count == 3); // the one-token request has no TPOT
    CHECK(s.tpot.median == Approx(10.0));
    CHECK(s.itl.max == Approx(30.0));
    CHECK(s.max_itl.max == Approx(50.0));
    CHECK(s.incomplete_outputs == 1);
    CHECK(s.errors[static_cast<std::size_t>(error_kind::http_status)] == 1);
    CHECK(s.errors[static_cast<std::size_t>(error_kind::reset)] == 1);
    CHECK(s.http_status.at(503) == 1);
    CHECK(s.finish_reasons.at("length") == 3);
    CHECK(s.finish_reasons.at("stop") == 1);
    CHECK(s.error_samples.size() == 2);
}

TEST_CASE("run summary counts the server's completion tokens when a stream's events carry several", "[loadgen][report]") {
    run_config cfg;
    cfg.max_tokens = 16;
    cfg.stream = true;
    request_record r = ok(0.010, 0.160, 6); // 6 events
    r.usage_completion_tokens = 16;          // for 16 tokens
    const summary s = summarize_run({r}, {}, 1.0, cfg);
    CHECK(s.total_output_tokens == 16);
    CHECK(s.tpot.median == Approx(10.0)); // 150 ms over 15 tokens after the first
    CHECK(s.incomplete_outputs == 0);
    CHECK(s.usage_mismatches == 1);       // still reported: events and tokens differ
}

TEST_CASE("run summary takes a length finish as max_tokens reached when events are all it counts", "[loadgen][report]") {
    run_config cfg;
    cfg.max_tokens = 16;
    cfg.stream = true;
    // 12 events without the server's count: a length finish reached 16
    // tokens, a stop did not.
    const summary s = summarize_run({ok(0.010, 0.160, 12), stopped(ok(0.010, 0.160, 12))}, {}, 1.0, cfg);
    CHECK(s.incomplete_outputs == 1);
    request_record counted = ok(0.010, 0.160, 12);
    counted.usage_completion_tokens = 12; // the server's count says short, whatever the finish
    CHECK(summarize_run({counted}, {}, 1.0, cfg).incomplete_outputs == 1);
}

TEST_CASE("run summary without SLOs has no goodput and JSON carries the configuration", "[loadgen][report]") {
    run_config cfg;
    cfg.label = "mock";
    cfg.concurrency = 8;
    const summary s = summarize_run({ok(0.001, 0.002, 16)}, {}, 1.0, cfg);
    CHECK_FALSE(s.request_goodput);
    const std::vector<request_record> rows = {ok(0.001, 0.002, 16, 0.0005)};
    const auto j = to_json(s, cfg, &rows);
    CHECK(j["label"] == "mock");
    CHECK(j["config"]["concurrency"] == 8);
    CHECK(j["config"]["mode"] == "concurrency");
    CHECK(j["request_goodput"].is_null());
    CHECK(j["errors"]["reset"] == 0);
    REQUIRE(j["per_request"].size() == 1);
    CHECK(j["per_request"][0]["max_itl_ms"].get<double>() == Approx(0.5));
}
