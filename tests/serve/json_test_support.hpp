// Test helpers shared by the JSON-mode and JSON-schema tests: random walks over
// a matcher's documents, and for the schema tests an independent validator and
// the checks built on it.
#pragma once

#include <weft/serve/json_constraint.hpp>
#include <weft/serve/json_schema.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace weft::serve::test {

/// Whether every number outside strings in the valid JSON text `doc` keeps
/// its digits before the point plus its positive exponent within
/// json_matcher::max_number_scale: the matcher's bound, which keeps every
/// number a double (nlohmann refuses 1e999 as out of range).
inline bool numbers_within_scale(const std::string& doc) {
    const auto digit = [&](std::size_t i) { return i < doc.size() && std::isdigit(static_cast<unsigned char>(doc[i])) != 0; };
    bool in_string = false;
    for (std::size_t i = 0; i < doc.size(); ++i) {
        const char c = doc[i];
        if (in_string) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
            continue;
        }
        if (c != '-' && !digit(i)) continue;
        // A number starts here.
        if (c == '-') ++i;
        std::size_t scale = 0;
        for (; digit(i); ++i) ++scale;
        if (i < doc.size() && doc[i] == '.') {
            for (++i; digit(i); ++i) {}
        }
        if (i < doc.size() && (doc[i] == 'e' || doc[i] == 'E')) {
            ++i;
            const bool negative = i < doc.size() && doc[i] == '-';
            if (i < doc.size() && (doc[i] == '-' || doc[i] == '+')) ++i;
            std::size_t e = 0;
            for (; digit(i); ++i) e = std::min<std::size_t>(e * 10 + static_cast<std::size_t>(doc[i] - '0'), 1000000);
            if (!negative) scale += e;
        }
        if (scale > json_matcher::max_number_scale) return false;
        --i; // the loop's ++i comes back to the byte after the number
    }
    return true;
}

/// A random walk over the bytes `m` accepts until it completes: random bytes
/// for `wander` of them, then the first of `closers` accepted (of
/// `after_digit` after a digit), heading for the end. Requires that some
/// byte is always accepted; returns the document.
inline std::string random_walk(json_matcher m, std::mt19937_64& rng, std::size_t wander, std::string_view closers,
                               std::string_view after_digit) {
    std::string doc;
    while (!m.complete()) {
        std::vector<std::uint8_t> ok;
        for (int b = 0; b < 256; ++b) {
            json_matcher t = m;
            if (t.feed(static_cast<std::uint8_t>(b))) ok.push_back(static_cast<std::uint8_t>(b));
        }
        INFO(doc);
        REQUIRE_FALSE(ok.empty());
        std::uint8_t next = ok[rng() % ok.size()];
        if (doc.size() >= wander) {
            next = ok.front();
            const bool digit = !doc.empty() && doc.back() >= '0' && doc.back() <= '9';
            for (const char c : digit ? after_digit : closers) {
                if (std::find(ok.begin(), ok.end(), static_cast<std::uint8_t>(c)) != ok.end()) {
                    next = static_cast<std::uint8_t>(c);
                    break;
                }
            }
        }
        REQUIRE(m.feed(next));
        doc += static_cast<char>(next);
        REQUIRE(doc.size() < 100000);
    }
    return doc;
}

/// `walks` random walks over `m`'s documents, each wandering up to
/// `max_wander` bytes before heading for the end, for schemas whose objects
/// hold strings only: calls check(key, value) for every member.
template <class Check>
void walk_strings(const json_matcher& m, int walks, std::uint64_t seed, std::size_t max_wander, Check check) {
    std::mt19937_64 rng(seed);
    // '"' closes a finished string; ',' and '}' end the object.
    const std::string closers = "\"}],0";
    for (int walk = 0; walk < walks; ++walk) {
        const std::string doc = random_walk(m, rng, rng() % max_wander, closers, closers);
        INFO(doc);
        const nlohmann::json value = nlohmann::json::parse(doc);
        for (const auto& [key, v] : value.items()) {
            INFO(key);
            REQUIRE(v.is_string());
            check(key, v.template get<std::string>());
        }
    }
}

/// The characters (code points) of UTF-8 text.
inline std::size_t code_points(const std::string& s) {
    return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xc0) != 0x80;
    }));
}

/// An independent validator for the subset json_schema supports, written from
/// JSON Schema's definitions (not from the compiler).
inline bool valid(const nlohmann::json& schema, const nlohmann::json& v, const nlohmann::json& root) {
    if (schema.is_boolean()) return schema.get<bool>();
    if (schema.contains("$ref")) {
        const std::string ref = schema["$ref"];
        const std::string name = ref.substr(ref.find('/', 2) + 1);
        if (!valid(ref == "#" ? root : root[ref.starts_with("#/$defs/") ? "$defs" : "definitions"][name], v, root)) {
            return false;
        }
        // Keywords beside the reference apply too (JSON Schema 2019-09).
    }
    for (const nlohmann::json& b : schema.value("allOf", nlohmann::json::array())) {
        if (!valid(b, v, root)) return false;
    }
    for (const char* key : {"anyOf", "oneOf"}) {
        if (!schema.contains(key)) continue;
        int matches = 0;
        for (const nlohmann::json& b : schema[key]) matches += valid(b, v, root) ? 1 : 0;
        if (key == std::string_view("anyOf") ? matches == 0 : matches != 1) return false;
    }
    if (schema.contains("type")) {
        const nlohmann::json types =
            schema["type"].is_array() ? schema["type"] : nlohmann::json::array({schema["type"]});
        bool ok = false;
        for (const nlohmann::json& t : types) {
            const std::string name = t;
            ok = ok || (name == "object" && v.is_object()) || (name == "array" && v.is_array()) ||
                 (name == "string" && v.is_string()) || (name == "number" && v.is_number()) ||
                 (name == "integer" && (v.is_number_integer() || v.is_number_unsigned())) ||
                 (name == "boolean" && v.is_boolean()) || (name == "null" && v.is_null());
        }
        if (!ok) return false;
    }
    if (schema.contains("const") && v != schema["const"]) return false;
    if (schema.contains("enum")) {
        const nlohmann::json& e = schema["enum"];
        if (std::find(e.begin(), e.end(), v) == e.end()) return false;
    }
    if (v.is_object()) {
        if (v.size() < schema.value("minProperties", 0u) || v.size() > schema.value("maxProperties", ~0u)) return false;
        const nlohmann::json props = schema.value("properties", nlohmann::json::object());
        for (const nlohmann::json& r : schema.value("required", nlohmann::json::array())) {
            if (!v.contains(r.get<std::string>())) return false;
        }
        for (const auto& [k, value] : v.items()) {
            if (schema.contains("propertyNames") && !valid(schema["propertyNames"], nlohmann::json(k), root)) {
                return false;
            }
            // A key that some patternProperties pattern matches meets
            // that pattern's schema and is not an additional one.
            bool patterned = false;
            const nlohmann::json patterns = schema.value("patternProperties", nlohmann::json::object());
            for (const auto& [p, sub] : patterns.items()) {
                if (!std::regex_search(k, std::regex(p))) continue;
                patterned = true;
                if (!valid(sub, value, root)) return false;
            }
            if (props.contains(k)) {
                if (!valid(props[k], value, root)) return false;
            } else if (!patterned && schema.contains("additionalProperties") &&
                       !valid(schema["additionalProperties"], value, root)) {
                return false;
            }
        }
    }
    if (v.is_array()) {
        if (v.size() < schema.value("minItems", 0u) || v.size() > schema.value("maxItems", ~0u)) return false;
        if (schema.value("uniqueItems", false)) {
            for (std::size_t i = 0; i < v.size(); ++i) {
                for (std::size_t j = 0; j < i; ++j) {
                    if (v[i] == v[j]) return false;
                }
            }
        }
        // A tuple: 2020-12's prefixItems then items, or the older drafts'
        // items as a list then additionalItems.
        const bool old_tuple = schema.contains("items") && schema["items"].is_array();
        const nlohmann::json tuple = old_tuple ? schema["items"] : schema.value("prefixItems", nlohmann::json::array());
        const char* rest = old_tuple ? "additionalItems" : "items";
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (i < tuple.size() ? !valid(tuple[i], v[i], root)
                                 : schema.contains(rest) && !valid(schema[rest], v[i], root)) {
                return false;
            }
        }
    }
    if (v.is_number()) {
        const double x = v.get<double>();
        if (schema.contains("minimum") && x < schema["minimum"].get<double>()) return false;
        if (schema.contains("maximum") && x > schema["maximum"].get<double>()) return false;
        if (schema.contains("exclusiveMinimum") && x <= schema["exclusiveMinimum"].get<double>()) return false;
        if (schema.contains("exclusiveMaximum") && x >= schema["exclusiveMaximum"].get<double>()) return false;
        if (schema.contains("multipleOf")) {
            const double q = x / schema["multipleOf"].get<double>();
            if (std::fabs(q - std::nearbyint(q)) > 1e-9 * std::max(1.0, std::fabs(q))) return false;
        }
    }
    if (v.is_string()) {
        const std::size_t n = code_points(v.get<std::string>());
        if (n < schema.value("minLength", 0u) || n > schema.value("maxLength", ~0u)) return false;
        // (ASCII patterns here: std::regex reads bytes.)
        if (schema.contains("pattern") &&
            !std::regex_search(v.get<std::string>(), std::regex(schema["pattern"].get<std::string>()))) {
            return false;
        }
    }
    return true;
}

/// Feeds `doc` byte by byte; true when every byte is taken and the object
/// completes at the last one.
inline bool takes(const json_schema& schema, std::string_view doc) {
    json_matcher m(&schema);
    for (const char c : doc) {
        if (m.complete() || !m.feed(static_cast<std::uint8_t>(c))) return false;
    }
    return m.complete();
}

/// The matcher takes every document of `accepted` (which the schema, by the
/// independent validator, accepts too) and refuses every one of `refused`.
inline void check_documents(const nlohmann::json& schema_json, std::initializer_list<const char*> accepted,
                            std::initializer_list<const char*> refused) {
    const json_schema s = json_schema::parse(schema_json.dump());
    for (const char* doc : accepted) {
        INFO(doc);
        CHECK(takes(s, doc));
        CHECK(valid(schema_json, nlohmann::json::parse(doc), schema_json));
    }
    for (const char* doc : refused) {
        INFO(doc);
        CHECK_FALSE(takes(s, doc));
    }
}

/// Random walks over accepted bytes, then heading for the end; every walk
/// must finish with an object the schema accepts.
inline void walk_and_validate(const nlohmann::json& schema_json, int walks, std::uint64_t seed) {
    const json_schema schema = json_schema::parse(schema_json.dump());
    std::mt19937_64 rng(seed);
    // After a digit, ',' before '0' (or a fraction never ends).
    const std::string closers = "\"}]0,", after_digit = "\"}],0";
    for (int walk = 0; walk < walks; ++walk) {
        const std::size_t wander = rng() % 200;
        const std::string doc = random_walk(json_matcher(&schema), rng, wander, closers, after_digit);
        INFO(doc);
        const nlohmann::json value = nlohmann::json::parse(doc);
        REQUIRE(valid(schema_json, value, schema_json));
    }
}

} // namespace weft::serve::test
