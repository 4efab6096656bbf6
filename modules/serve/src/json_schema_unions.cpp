// json_schema_compiler's unions: `anyOf` / `oneOf` as one node whose value's
// first byte picks the branch, an anyOf branch that takes every value of a
// kind standing for the others, and several object branches told apart by a
// constant tag (a discriminated union).
#include "json_schema_compiler.hpp"

#include "json_schema_merge.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace weft::serve {

namespace {

using json = nlohmann::json;
using detail::fail;

} // namespace

/// anyOf, or oneOf (`exclusive`: a value may match one branch only).
std::uint16_t json_schema_compiler::compile_union(const json& branches, const std::string& path,
                                                  const std::string& memo_key, bool exclusive) {
    if (!branches.is_array() || branches.empty()) fail(path, "must be a non-empty array of schemas");
    const std::uint16_t idx = allocate(memo_key);
    json_schema::node n;
    std::array<std::size_t, json_schema::kind_count> owner{};
    std::vector<std::uint16_t> objects; // the object nodes of the branches that accept objects
    std::vector<std::size_t> object_branches;
    for (std::size_t i = 0; i < branches.size(); ++i) {
        const std::string bpath = fmt::format("{}[{}]", path, i);
        const std::uint16_t b = compile(branches[i], bpath);
        if (!m_done[b]) fail(bpath, "a branch that refers back to its own anyOf is not supported");
        const json_schema::node& bn = m_out.m_nodes[b];
        for (std::size_t k = 0; k < json_schema::kind_count; ++k) {
            if (bn.by_kind[k] < 0) continue;
            if (k == json_schema::object_kind) {
                const auto o = static_cast<std::uint16_t>(bn.by_kind[k]);
                if (std::find(objects.begin(), objects.end(), o) == objects.end()) {
                    objects.push_back(o);
                    object_branches.push_back(i);
                }
                continue;
            }
            if (n.by_kind[k] >= 0 && n.by_kind[k] != bn.by_kind[k]) {
                // In an anyOf, one branch taking every value of the kind
                // is the union of both there (pydantic's Union[int,
                // float]); a oneOf would refuse the values both take.
                if (!exclusive && takes_every(n.by_kind[k], k)) continue;
                if (!exclusive && takes_every(bn.by_kind[k], k)) {
                    n.by_kind[k] = bn.by_kind[k];
                    owner[k] = i;
                    continue;
                }
                fail(path, fmt::format("branches {} and {} both accept a value of the same kind: only branches "
                                       "that start differently (object, array, string, number, boolean, null) "
                                       "are supported",
                                       owner[k], i));
            }
            n.by_kind[k] = bn.by_kind[k];
            owner[k] = i;
        }
    }
    if (objects.size() > 1 && !exclusive) {
        // As for the other kinds: an anyOf branch that takes every
        // object (`Union[Model, dict]`) is the union of them all.
        const auto every = std::find_if(objects.begin(), objects.end(),
                                        [&](std::uint16_t o) { return takes_every(o, json_schema::object_kind); });
        if (every != objects.end()) objects = {*every};
    }
    if (objects.size() == 1) n.by_kind[json_schema::object_kind] = objects[0];
    if (objects.size() > 1) n.by_kind[json_schema::object_kind] = discriminated(objects, object_branches, path);
    m_out.m_nodes[idx] = std::move(n);
    m_done[idx] = true;
    return idx;
}

/// Whether `node` accepts every value of kind `k` (a finished node with
/// no constraint on that kind).
bool json_schema_compiler::takes_every(std::int32_t node, std::size_t k) const {
    if (node < 0 || !m_done[static_cast<std::size_t>(node)]) return false;
    const json_schema::node& n = m_out.m_nodes[static_cast<std::size_t>(node)];
    if (!n.literals.empty()) return false;
    switch (k) {
    case json_schema::string_kind:
        return n.min_length == 0 && n.max_length == json_schema::unbounded &&
               n.format == json_schema::string_format::none && n.pattern == nullptr;
    case json_schema::number_kind: return !n.integer_only && !n.bounded;
    case json_schema::array_kind:
        return n.items == json_schema::any && n.prefix_items.empty() && n.min_items == 0 &&
               n.max_items == json_schema::unbounded && !n.unique_items;
    case json_schema::object_kind:
        return n.properties.empty() && n.additional == json_schema::any && n.key_pattern == nullptr &&
               n.key_min_length == 0 && n.key_max_length == json_schema::unbounded && n.min_properties == 0 &&
               n.max_properties == json_schema::unbounded && n.branches.empty();
    case json_schema::boolean_kind:
    case json_schema::null_kind: return true;
    default: return false;
    }
}

/// The constant string of `node`'s property `name`, when it is required
/// and has exactly one value, a string.
const std::string* json_schema_compiler::tag_of(std::uint16_t node, const std::string& name) const {
    const json_schema::node& n = m_out.m_nodes[node];
    for (std::size_t i = 0; i < n.properties.size(); ++i) {
        if (n.properties[i].name != name) continue;
        if ((n.required >> i & 1) == 0) return nullptr;
        const json_schema::node& v = m_out.m_nodes[n.properties[i].node];
        if (v.literals.size() != 1 || v.literals[0].front() != '"') return nullptr;
        return &v.literals[0];
    }
    return nullptr;
}

/// A union node over several object branches, told apart by the first
/// property of the first that every branch requires with a different
/// constant string; fails when there is none.
std::int32_t json_schema_compiler::discriminated(const std::vector<std::uint16_t>& objects,
                                                 const std::vector<std::size_t>& branch_of, const std::string& path) {
    for (std::uint16_t o : objects) {
        if (!m_done[o]) fail(path, "an object branch that refers back to its own anyOf is not supported");
    }
    const std::vector<json_schema::property> first = m_out.m_nodes[objects[0]].properties;
    for (const json_schema::property& candidate : first) {
        std::vector<std::string> tags;
        for (std::uint16_t o : objects) {
            const std::string* t = tag_of(o, candidate.name);
            if (t == nullptr || std::find(tags.begin(), tags.end(), *t) != tags.end()) break;
            tags.push_back(*t);
        }
        if (tags.size() != objects.size()) continue;
        if (tags.size() > json_schema::max_literals) fail(path, "more than 64 object branches");
        const std::uint16_t values = allocate({});
        json_schema::node v;
        v.literals = tags;
        v.by_kind[json_schema::string_kind] = values;
        m_out.m_nodes[values] = std::move(v);
        m_done[values] = true;
        const std::uint16_t u = allocate({});
        json_schema::node un;
        un.by_kind[json_schema::object_kind] = u;
        un.properties.push_back({candidate.name, values});
        un.required = 1;
        un.branches = objects;
        m_out.m_nodes[u] = std::move(un);
        m_done[u] = true;
        return u;
    }
    fail(path, fmt::format("branches {} and {} both accept a value of the same kind: only branches that start "
                           "differently (object, array, string, number, boolean, null) are supported, or objects "
                           "told apart by a property each requires with a different constant string",
                           branch_of[0], branch_of[1]));
}

} // namespace weft::serve
