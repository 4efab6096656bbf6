// Structured-output masks: json_constraint::allowed over a whole vocabulary,
// at matcher states a schema-held reply passes through, against the plain
// way (copy the matcher, feed the token, for every token) in the same run.
//
//   weft-mask-bench [--vocab 4096] [--rounds 7] [--json build/bench-mask.json]
//
// Prints per state the microseconds of each (medians over the rounds) and
// their ratio, and writes them as JSON.
#include <weft/serve/demo_model.hpp>
#include <weft/serve/json_constraint.hpp>
#include <weft/serve/json_schema.hpp>
#include <weft/serve/tokenizer.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace weft::serve;

namespace {

constexpr const char* schema_text = R"({"type": "object", "properties": {
    "name": {"type": "string"},
    "bio": {"type": "string", "maxLength": 200},
    "age": {"type": "integer", "minimum": 0, "maximum": 130},
    "born": {"type": "string", "format": "date"},
    "email": {"type": "string", "format": "email"},
    "site": {"type": "string", "format": "uri", "maxLength": 2083},
    "code": {"type": "string", "pattern": "^[a-z ]+$"}},
    "additionalProperties": false})";

struct state {
    const char* name;
    const char* prefix; // the reply so far
};

constexpr state states[]{
    {"key", R"({")"},
    {"plain string", R"({"name":"Ja)"},
    {"string, maxLength", R"({"bio":"Ja)"},
    {"bounded integer", R"({"age":1)"},
    {"date", R"({"born":"19)"},
    {"email", R"({"email":"jane.d)"},
    {"uri", R"({"site":"https://exa)"},
    {"pattern", R"({"code":"ab)"},
};

template <class F>
double median_us(int rounds, int reps, F&& f) {
    std::vector<double> t;
    for (int r = 0; r < rounds; ++r) {
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; ++i) f();
        t.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / reps);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"structured-output masks against a per-token copy and feed"};
    std::size_t vocab_size = 4096;
    int rounds = 7;
    std::string json_path = "build/bench-mask.json";
    app.add_option("--vocab", vocab_size, "demo tokenizer vocabulary size")->capture_default_str();
    app.add_option("--rounds", rounds, "rounds per measurement (medians)")->capture_default_str();
    app.add_option("--json", json_path)->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    const tokenizer tok(demo_tokenizer(vocab_size));
    const auto vocab = std::make_shared<const token_texts>(tok);
    const auto schema = std::make_shared<const json_schema>(json_schema::parse(schema_text));

    nlohmann::json report;
    report["vocab"] = vocab->size();
    report["rounds"] = rounds;
    nlohmann::json rows = nlohmann::json::array();
    fmt::print("vocabulary: {} tokens\n\n{:<20} {:>8} {:>12} {:>14} {:>8}\n", vocab->size(), "state", "allowed",
               "mask (us)", "per token (us)", "ratio");
    std::vector<std::uint64_t> bits;
    for (const state& st : states) {
        json_constraint c(vocab, schema);
        // Feed the prefix byte by byte (through a matcher) as tokens would.
        json_matcher m(schema.get());
        if (!m.feed(std::string_view(st.prefix))) throw std::logic_error(fmt::format("'{}' is refused", st.prefix));
        for (const char ch : std::string_view(st.prefix)) {
            bool fed = false;
            for (std::size_t t = 0; t < vocab->size() && !fed; ++t) {
                if ((*vocab)[static_cast<token_id>(t)] == std::string_view(&ch, 1)) fed = c.advance(static_cast<token_id>(t));
            }
            if (!fed) throw std::logic_error(fmt::format("no single-byte token for '{}'", ch));
        }
        const std::size_t count = c.allowed(bits);
        // The reference: every token through a copy of the matcher.
        std::size_t reference_count = 0;
        const auto per_token = [&] {
            reference_count = 0;
            for (std::size_t t = 0; t < vocab->size(); ++t) {
                const std::string_view text = (*vocab)[static_cast<token_id>(t)];
                json_matcher copy = m;
                reference_count += !text.empty() && copy.feed(text) ? 1 : 0;
            }
        };
        per_token();
        if (reference_count != count) {
            throw std::logic_error(fmt::format("{}: mask allows {}, the reference {}", st.name, count, reference_count));
        }
        const double mask_us = median_us(rounds, 20, [&] { c.allowed(bits); });
        const double ref_us = median_us(rounds, 20, per_token);
        fmt::print("{:<20} {:>8} {:>12.1f} {:>14.1f} {:>7.1f}x\n", st.name, count, mask_us, ref_us, ref_us / mask_us);
        rows.push_back({{"state", st.name}, {"allowed", count}, {"mask_us", mask_us}, {"per_token_us", ref_us},
                        {"ratio", ref_us / mask_us}});
    }
    report["states"] = rows;
    std::ofstream(json_path) << report.dump(2) << "\n";
    fmt::print("\nwrote {}\n", json_path);
}
