// json_schema's compiler (a friend of json_schema): reads a schema document
// into the graph of nodes json_matcher walks, one node a schema part, the
// keywords it does not support refused by name. One instance a parse. Its
// parts, by what they read:
// - json_schema.cpp: a schema's keywords (compile, which hands the others
//   their parts), `$ref`, and the counts every part reads;
// - json_schema_objects.cpp: `propertyNames`, `patternProperties` and an
//   object's number of keys;
// - json_schema_arrays.cpp: `items` and tuples, `uniqueItems`;
// - json_schema_scalars.cpp: numbers' bounds, strings' `format` and
//   `pattern`;
// - json_schema_unions.cpp: `anyOf` / `oneOf`, discriminated unions.
// (An intersection, `allOf`, is merged into one schema first:
// json_schema_merge.hpp.) Private to the serve module.
#pragma once

#include <weft/serve/json_schema.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace weft::serve {

class json_schema_compiler {
public:
    using json = nlohmann::json;

    explicit json_schema_compiler(const json& doc);

    json_schema run();

private:
    // ---- json_schema.cpp ----------------------------------------------------
    std::uint16_t allocate(const std::string& memo_key);
    std::uint16_t compile(const json& s, const std::string& path, const std::string& memo_key = {});
    std::uint16_t resolve(const std::string& ref, const std::string& path);
    static std::uint32_t count(const json& s, const char* key, const std::string& path, std::uint32_t fallback);

    // ---- json_schema_objects.cpp --------------------------------------------
    json with_named_properties(const json& s, const std::string& path) const;
    static json with_pattern_names(const json& s, const json& names, json out, const std::string& path);
    void key_pattern(const json& p, const std::string& path, json_schema::node& n);
    static void key_lengths(const json& names, const std::string& path, json_schema::node& n);
    static bool lengths_only(const json& names);
    static bool is_length(std::string_view key);
    static void object_size(const json& s, const std::string& path, json_schema::node& n);

    // ---- json_schema_arrays.cpp ---------------------------------------------
    void compile_items(const json& s, const std::string& path, json_schema::node& n);
    void compile_unique(const std::string& path, json_schema::node& n);

    // ---- json_schema_scalars.cpp --------------------------------------------
    static std::int64_t unit_of(int fraction_digits);
    static std::optional<long double> whole_units(long double scaled);
    static bool within_bounds(const json& v, const json_schema::node& n);
    static void number_bounds(const json& s, const std::string& path, json_schema::node& n);
    static void string_format(const json& s, const std::string& path, bool strings, json_schema::node& n);
    static std::shared_ptr<const json_pattern> compile_pattern(const std::string& pattern, const std::string& path);
    static void string_pattern(const json& s, const std::string& path, bool strings, json_schema::node& n);

    // ---- json_schema_unions.cpp ---------------------------------------------
    std::uint16_t compile_union(const json& branches, const std::string& path, const std::string& memo_key,
                                bool exclusive);
    bool takes_every(std::int32_t node, std::size_t k) const;
    const std::string* tag_of(std::uint16_t node, const std::string& name) const;
    std::int32_t discriminated(const std::vector<std::uint16_t>& objects, const std::vector<std::size_t>& branch_of,
                               const std::string& path);

    const json& m_doc;
    json_schema m_out;
    std::vector<bool> m_done;
    std::map<std::string, std::uint16_t> m_refs;
    std::set<std::string> m_resolving;
};

} // namespace weft::serve
