#include <weft/serve/metrics.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace weft::serve;

TEST_CASE("a histogram renders cumulative buckets, sum and count", "[metrics]") {
    histogram h({0.1, 1.0});
    h.observe(0.05);
    h.observe(0.5);
    h.observe(0.5);
    h.observe(3.0);
    std::string out;
    h.render(out, "x_seconds", "help text");
    CHECK_THAT(out, Catch::Contains("# TYPE x_seconds histogram"));
    CHECK_THAT(out, Catch::Contains("x_seconds_bucket{le=\"0.1\"} 1\n"));
    CHECK_THAT(out, Catch::Contains("x_seconds_bucket{le=\"1\"} 3\n"));
    CHECK_THAT(out, Catch::Contains("x_seconds_bucket{le=\"+Inf\"} 4\n"));
    CHECK_THAT(out, Catch::Contains("x_seconds_sum 4.05\n"));
    CHECK_THAT(out, Catch::Contains("x_seconds_count 4\n"));
    CHECK(h.count() == 4);
}

TEST_CASE("a histogram observes a batch of values as it observes them one by one", "[metrics]") {
    histogram one({0.1, 1.0}), many({0.1, 1.0});
    const std::vector<double> values{0.05, 0.5, 0.5, 3.0, 1.0};
    for (const double v : values) one.observe(v);
    many.observe_many(values);
    many.observe_many({});
    std::string a, b;
    one.render(a, "x", "h");
    many.render(b, "x", "h");
    CHECK(a == b);
    CHECK(many.count() == 5);
    CHECK(many.sum() == one.sum());
}

TEST_CASE("metrics carry the counters and escape the model label", "[metrics]") {
    serve_metrics m;
    m.kv_blocks_total = 64;
    m.kv_blocks_used = 3;
    m.rejected += 2;
    m.count_finished(finish_reason::length);
    const std::string out = m.render("a \"quoted\"\\name\nx");
    CHECK_THAT(out, Catch::Contains("weft_kv_blocks_total{model=\"a \\\"quoted\\\"\\\\name\\nx\"} 64\n"));
    CHECK_THAT(out, Catch::Contains("weft_kv_blocks_used{model="));
    CHECK_THAT(out, Catch::Contains("weft_requests_rejected_total{model=\"a \\\"quoted\\\"\\\\name\\nx\"} 2\n"));
    CHECK_THAT(out, Catch::Contains("reason=\"length\"} 1\n"));
    // Every sample line is "name{labels} value": no raw line break inside a label.
    std::size_t lines = 0;
    for (std::size_t at = 0; (at = out.find('\n', at)) != std::string::npos; ++at) ++lines;
    CHECK(lines > 20);
    CHECK(out.find("name\nx") == std::string::npos);
}
