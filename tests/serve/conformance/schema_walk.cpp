// Documents that json_matcher completes under a JSON Schema, for a validator
// outside weft to judge (tests/serve/conformance/run.sh).
//
//   weft_schema_walk [--walks N] [--seed S] [--max-bytes M] SCHEMA.json...
//
// For each schema: N random walks over the bytes the matcher accepts, each
// wandering a random number of bytes, then heading for the end by
// preferring bytes that close things. Every document that completes is
// written to stdout as one line of JSON, {"schema": FILE, "doc": TEXT}; a
// count per schema goes to stderr. A schema json_schema::parse refuses, a
// matcher that accepts no byte before it completes, or a completed document
// that is not UTF-8 stops the run with exit status 1.
#include <weft/serve/json_constraint.hpp>
#include <weft/serve/json_schema.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

using weft::serve::json_matcher;
using weft::serve::json_schema;

namespace {

/// The bytes `m` would take next.
std::vector<std::uint8_t> accepted(const json_matcher& m) {
    std::vector<std::uint8_t> ok;
    for (int b = 0; b < 256; ++b) {
        const char c = static_cast<char>(b);
        if (m.accepts(std::string_view(&c, 1))) ok.push_back(static_cast<std::uint8_t>(b));
    }
    return ok;
}

/// One walk: random accepted bytes for `wander` of them (from the ASCII ones
/// seven times in eight, as most of a model's text is), then the first of
/// `closers` accepted, or a random byte as before when none is. The
/// document, or nullopt when it has not completed within `max_bytes`.
std::optional<std::string> walk(json_matcher m, std::mt19937_64& rng, std::size_t wander, std::size_t max_bytes) {
    static constexpr std::string_view closers = "\"}],0";
    std::string doc;
    while (!m.complete()) {
        if (doc.size() >= max_bytes) return std::nullopt;
        const std::vector<std::uint8_t> ok = accepted(m);
        if (ok.empty()) throw std::runtime_error("the matcher accepts no byte after: " + doc);
        std::vector<std::uint8_t> ascii;
        for (std::uint8_t b : ok) {
            if (b < 0x80) ascii.push_back(b);
        }
        const std::vector<std::uint8_t>& pool = !ascii.empty() && rng() % 8 != 0 ? ascii : ok;
        std::uint8_t next = pool[rng() % pool.size()];
        if (doc.size() >= wander) {
            const auto closer = std::find_first_of(closers.begin(), closers.end(), ok.begin(), ok.end(),
                                                   [](char c, std::uint8_t b) { return static_cast<std::uint8_t>(c) == b; });
            if (closer != closers.end()) next = static_cast<std::uint8_t>(*closer);
        }
        if (!m.feed(next)) throw std::runtime_error("feed refused a byte accepts() took");
        doc += static_cast<char>(next);
    }
    return doc;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"documents json_matcher completes under JSON Schemas, one JSON line each"};
    std::size_t walks = 200;
    std::uint64_t seed = 1;
    std::size_t max_bytes = 20000;
    std::size_t max_wander = 300;
    std::vector<std::string> files;
    app.add_option("--walks", walks, "walks per schema")->check(CLI::PositiveNumber);
    app.add_option("--seed", seed, "random seed");
    app.add_option("--max-bytes", max_bytes, "a walk longer than this is dropped");
    app.add_option("--max-wander", max_wander, "the most bytes a walk wanders before heading for the end");
    app.add_option("schemas", files, "JSON Schema files")->required()->check(CLI::ExistingFile);
    CLI11_PARSE(app, argc, argv);

    try {
        std::mt19937_64 rng(seed);
        for (const std::string& file : files) {
            const json_schema schema = json_schema::parse(read_file(file));
            const std::string name = std::filesystem::path(file).filename().string();
            std::size_t done = 0;
            for (std::size_t i = 0; i < walks; ++i) {
                const std::optional<std::string> doc =
                    walk(json_matcher(&schema), rng, rng() % (max_wander + 1), max_bytes);
                if (!doc) continue;
                // dump() throws on invalid UTF-8: the matcher must never let it through.
                std::cout << nlohmann::json{{"schema", name}, {"doc", *doc}}.dump() << '\n';
                ++done;
            }
            std::cerr << name << ": " << done << " of " << walks << " walks completed\n";
        }
    } catch (const std::exception& e) {
        std::cerr << "weft_schema_walk: " << e.what() << '\n';
        return 1;
    }
    return 0;
}
