// json_schema_compiler's array keywords: `items` and tuples (`prefixItems`,
// or the older drafts' `items` list and `additionalItems`), and
// `uniqueItems`.
#include "json_schema_compiler.hpp"

#include "json_schema_merge.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace weft::serve {

namespace {

using json = nlohmann::json;
using detail::fail;
using detail::at_path;

} // namespace

/// `items` alone: every element. A tuple, as 2020-12 writes it
/// (`prefixItems`, then `items` for the rest) or as drafts 4-2019 did
/// (`items` a list, then `additionalItems`): element i < the list's
/// length takes schema i, later ones the rest's schema; a rest of
/// `false` caps the array at the list's length.
void json_schema_compiler::compile_items(const json& s, const std::string& path, json_schema::node& n) {
    const auto prefix = s.find("prefixItems");
    const auto items = s.find("items");
    const auto additional = s.find("additionalItems");
    const bool old_tuple = items != s.end() && items->is_array();
    if (prefix != s.end() && old_tuple) {
        fail(at_path(path, "items"), "a list of schemas beside 'prefixItems' (use one tuple form)");
    }
    if (additional != s.end() && !old_tuple) {
        fail(at_path(path, "additionalItems"), "only beside 'items' given as a list of schemas");
    }
    const auto tuple = old_tuple ? items : prefix;
    const auto rest = old_tuple ? additional : items;
    const std::string tuple_path = at_path(path, old_tuple ? "items" : "prefixItems");
    if (tuple != s.end()) {
        if (!tuple->is_array() || tuple->empty()) fail(tuple_path, "must be a non-empty array of schemas");
        if (tuple->size() > json_schema::max_tuple_items) {
            fail(tuple_path, fmt::format("more than {} schemas", json_schema::max_tuple_items));
        }
        for (std::size_t i = 0; i < tuple->size(); ++i) {
            n.prefix_items.push_back(compile((*tuple)[i], fmt::format("{}[{}]", tuple_path, i)));
        }
    }
    if (rest == s.end()) return;
    const std::string rest_path = at_path(path, old_tuple ? "additionalItems" : "items");
    if (rest->is_boolean() && !rest->get<bool>()) {
        // No element past the tuple (or, without one, none at all).
        n.max_items = std::min<std::uint32_t>(n.max_items, static_cast<std::uint32_t>(n.prefix_items.size()));
        return;
    }
    n.items = compile(*rest, rest_path);
}

/// `uniqueItems: true` over enum / const items: the matcher offers
/// each value once per array, so an array holds at most as many
/// elements as there are values. Over strings or integers: the matcher
/// refuses to end an element as an earlier one's text, remembering at
/// most max_unique_values of them.
void json_schema_compiler::compile_unique(const std::string& path, json_schema::node& n) {
    const auto unsupported = [&] {
        fail(path, "supported only for arrays whose items are strings, integers, or enum or const values");
    };
    if (!n.prefix_items.empty() || n.items == json_schema::any || !m_done[n.items]) unsupported();
    const json_schema::node& e = m_out.m_nodes[n.items];
    std::size_t kinds = 0;
    for (const std::int32_t b : e.by_kind) {
        if (b >= 0 && b != n.items) unsupported(); // an anyOf of several nodes
        kinds += b >= 0 ? 1 : 0;
    }
    if (e.literals.empty()) {
        const bool strings = e.by_kind[json_schema::string_kind] >= 0;
        const bool integers = e.by_kind[json_schema::number_kind] >= 0 && e.integer_only;
        if (kinds != 1 || (!strings && !integers)) unsupported();
        if (e.format != json_schema::string_format::none || e.pattern != nullptr || e.bounded) {
            // Their values can run out (every date of a month used, every
            // integer in range): an enum of them says so to the matcher.
            fail(path, "not supported over strings with a format or pattern, or bounded integers "
                       "(an enum of the values is)");
        }
        if (n.min_items > json_schema::max_unique_values) {
            fail(path, fmt::format("an array of unique strings or integers holds at most {} elements "
                                   "(minItems is {})",
                                   json_schema::max_unique_values, n.min_items));
        }
        n.unique_items = true;
        // Strings of no characters: the one value, "".
        const std::uint32_t values = strings && e.max_length == 0 ? 1 : json_schema::max_unique_values;
        n.max_items = std::min<std::uint32_t>(n.max_items, values);
        return;
    }
    std::vector<json> values;
    for (const std::string& text : e.literals) {
        json v = json::parse(text);
        if (std::find(values.begin(), values.end(), v) != values.end()) {
            fail(path, fmt::format("the items' values list {} twice", text));
        }
        values.push_back(std::move(v));
    }
    n.unique_items = true;
    n.max_items = std::min<std::uint32_t>(n.max_items, static_cast<std::uint32_t>(values.size()));
}

} // namespace weft::serve
