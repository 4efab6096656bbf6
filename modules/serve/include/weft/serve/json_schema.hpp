/// \file
/// Structured outputs (`response_format: {"type": "json_schema"}`): a JSON
/// Schema compiled for `json_matcher`, so generation can only produce an
/// object the schema accepts.
///
/// `json_schema::parse` takes the schema's JSON text and compiles the subset
/// below into a small graph of nodes; anything outside it is an error that
/// names the keyword, never silently ignored (an ignored constraint would be
/// output the caller's validator rejects):
/// - `type` (a name or a list of names), `enum`, `const` (scalar values; both
///   together: the const, which must be one of the enum's values);
/// - objects: `properties`, `required`, `additionalProperties` (without
///   `properties`: false for `{}` only, a schema for the values of any keys,
///   true or absent for any values); with `properties`, only the declared
///   keys are generated (each at most once, in any order, the required ones
///   before the object may close), as OpenAI's strict mode asks;
///   `minProperties` and `maxProperties` (pydantic's `dict` with
///   `min_length` / `max_length`); `patternProperties` with one pattern and
///   no `properties` (pydantic's `dict[constr(pattern=...), V]`): each key
///   generated as a match of the pattern (see `pattern`), its value against
///   the pattern's schema; `propertyNames` as an `enum` / `const`
///   of names, directly or under a `$ref` (pydantic's `dict[Literal[...],
///   V]` or `dict[SomeEnum, V]`): read as those properties, each with its
///   declared schema or `additionalProperties`, and no other key; or as a
///   `pattern` (no `properties`): read as `patternProperties` of that
///   pattern with `additionalProperties`' schema; its `minLength` /
///   `maxLength` bound each key (pydantic's `dict[constr(max_length=...),
///   V]`);
/// - arrays: `items`, `minItems`, `maxItems`, and tuples: `prefixItems`
///   (then `items`, `false` for no more elements), or `items` as a list of
///   schemas with `additionalItems` (the older drafts' spelling);
///   `uniqueItems` when the items are `enum` / `const` values (pydantic's
///   `set[Literal[...]]` or `set[SomeEnum]`): a value already in the array
///   is not offered again; or strings or integers (`set[str]`, `set[int]`;
///   strings with a length or none, not with a `format` or `pattern`, and
///   integers without bounds, whose values can run out): an element may not
///   end as the text of an earlier one, the elements spell `/` as itself,
///   write no `\u` escape and no `-0` (so equal texts are equal values; a
///   control character other than the five with short escapes cannot
///   appear), and the array holds at most `max_unique_values`;
/// - numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`,
///   `multipleOf`: each digit after which no number in range (and a
///   multiple of the step) can follow is refused; such a number has at most
///   18 digits, 6 after the point, and no exponent;
/// - strings: `minLength`, `maxLength` (in code points), `format` (`date`,
///   `time`, `date-time`, `duration` as RFC 3339 writes them, `uuid`,
///   `ipv4`, `ipv6`, `hostname`, `email`, `uri` as an http(s) URL; pydantic's
///   `uuid1`, `uuid3`, `uuid4`, `uuid5` and `ipvanyaddress`; OpenAPI's
///   `password` and `binary` take any string): a formatted string is
///   generated character by character within its grammar (`2023-02-29` is refused at its last
///   digit) and within `maxLength`; `minLength` beside it may not exceed the format's shortest
///   value; `format` on a node that accepts no string constrains nothing there and is allowed;
///   `pattern` (a regular expression, PCRE2 syntax, which covers ECMA-262's):
///   the string is generated as a match from its start, of at most 256
///   bytes of characters written as themselves (no escape; a multi-byte
///   character from a token that holds all of it, as PCRE2 matches whole
///   characters), so a pattern whose matches need a quote, backslash or
///   control character, or a character no token holds whole, cannot
///   finish; `maxLength` counts characters;
/// - `anyOf` / `oneOf` whose branches start with different kinds of value
///   (an object or null, a string or an integer, …): the first byte picks the
///   branch, as `Optional[...]` fields produce; in an `anyOf`, branches of
///   one kind where one of them takes every value of it (`Union[int,
///   float]`: any number; `Union[Model, dict]`: any object); several
///   object branches when
///   a property they all require has a different constant string in each
///   (a discriminated union, as pydantic's `Literal` tags make): that
///   property is generated first and its value picks the branch;
/// - `$ref` to `#/$defs/...` or `#/definitions/...`, recursion included;
/// - `allOf` (one schema, as pydantic v1 wraps a `$ref` with a description,
///   or several, as a model extending a base is written) and `$ref` beside
///   other keywords (JSON Schema 2019-09 reads it as an `allOf`): the schemas
///   merged into one that accepts what all of them accept: types in common,
///   properties and required names joined (a property two schemas declare
///   meets both; `additionalProperties: false` in one shuts out what only
///   the others declare), enum values in common, the tighter bound of each;
///   other keywords that two schemas give different values (`pattern`,
///   `format`, `anyOf`, ...) are refused;
/// - annotations (`title`, `description`, `default`, `examples`, `$schema`,
///   `$id`, `$comment`, `strict`, `deprecated`, `readOnly`, `writeOnly`, and
///   OpenAPI's `discriminator` beside a union of tagged objects, which its
///   branches' tags already express).
/// The top-level value must be an object. At most 64 properties per object
/// and 64 values per `enum`.
///
/// Lifetime and threading: immutable once parsed; shared (by pointer) by
/// every matcher of every request that uses it, from any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace weft::serve {

class json_pattern;

class json_schema {
public:
    /// What a value's first byte says it is.
    enum value_kind : std::uint8_t { object_kind, array_kind, string_kind, number_kind, boolean_kind, null_kind };
    static constexpr std::size_t kind_count = 6;
    static constexpr std::uint32_t unbounded = std::numeric_limits<std::uint32_t>::max();
    static constexpr std::size_t max_properties = 64;
    static constexpr std::size_t max_literals = 64;
    /// The most schemas a tuple (`prefixItems`) may list.
    static constexpr std::size_t max_tuple_items = 64;
    /// The most bytes a string under `pattern` may take.
    static constexpr std::size_t max_pattern_bytes = 256;
    /// The most elements of a `uniqueItems` array of strings or integers.
    static constexpr std::size_t max_unique_values = 32;
    /// Node 0 accepts any JSON value.
    static constexpr std::uint16_t any = 0;

    /// The string formats the matcher generates (see json_format.hpp).
    enum class string_format : std::uint8_t {
        none, date, time, date_time, duration, uuid, ipv4, ipv6, hostname, email, uri,
        uuid1, uuid3, uuid4, uuid5, // RFC 4122 uuids of one version
        ipvanyaddress               // ipv4 or ipv6
    };

    struct property {
        std::string name;
        std::uint16_t node = any;
    };

    struct node {
        /// The node a value starting as each kind is matched against, or -1
        /// when this node refuses that kind (a plain node names itself, an
        /// `anyOf` names its branches).
        std::array<std::int32_t, kind_count> by_kind{-1, -1, -1, -1, -1, -1};
        bool integer_only = false;
        /// Numbers under minimum / maximum / exclusiveMinimum /
        /// exclusiveMaximum / multipleOf: the closed range they leave, in units of
        /// 10^-bound_fraction_digits (0 for integers, else 6: a bounded
        /// number has at most 6 digits after its point, 18 in all, and no
        /// exponent).
        bool bounded = false;
        std::uint8_t bound_fraction_digits = 0;
        std::int64_t min_scaled = 0;
        std::int64_t max_scaled = 0;
        /// multipleOf, in the same units (1: any value); the range's ends
        /// are multiples of it.
        std::int64_t step_scaled = 1;
        /// Serialised values (enum / const): the value must be one of them.
        std::vector<std::string> literals;
        // Objects.
        std::vector<property> properties;
        std::uint64_t required = 0; ///< bit i: properties[i] is required
        /// Without properties: the node of every key's value, or -1 for none.
        std::int32_t additional = any;
        /// `patternProperties` (one pattern, no properties): every key is
        /// generated as a match of it, its value against `additional`.
        std::shared_ptr<const json_pattern> key_pattern;
        /// `propertyNames` with `minLength` / `maxLength` (no properties):
        /// how many characters each key has.
        std::uint32_t key_min_length = 0;
        std::uint32_t key_max_length = unbounded;
        /// minProperties / maxProperties: how many keys the object has.
        /// With properties, max leaves room for the required ones still
        /// missing, and min is at most their number.
        std::uint32_t min_properties = 0;
        std::uint32_t max_properties = unbounded;
        // Arrays: element i is matched against prefix_items[i] (a tuple),
        // later ones against items.
        std::vector<std::uint16_t> prefix_items;
        std::uint16_t items = any;
        [[nodiscard]] std::uint16_t element(std::size_t i) const noexcept {
            return i < prefix_items.size() ? prefix_items[i] : items;
        }
        /// `uniqueItems`: items is a node of literals, each used at most
        /// once per array (max_items is at most their number), or a node of
        /// strings or of integers, each text at most once (max_items at most
        /// max_unique_values).
        bool unique_items = false;
        std::uint32_t min_items = 0;
        std::uint32_t max_items = unbounded;
        // Strings.
        std::uint32_t min_length = 0;
        std::uint32_t max_length = unbounded;
        /// `format`: the grammar every string of this node follows (never
        /// with a length bound, which could leave it no complete value).
        string_format format = string_format::none;
        /// `pattern`: the regular expression the string contains a match of
        /// (generated as a match from its start; json_pattern.hpp), or null.
        std::shared_ptr<const json_pattern> pattern;
        /// A discriminated union of objects: properties[0] is the property
        /// that tells the branches apart (required, its node the branches'
        /// constant strings), and branches[i] is the object node whose
        /// constant is literal i of that node. The matcher takes that
        /// property first, then continues in the branch its value names.
        std::vector<std::uint16_t> branches;
    };

    /// Compiles a schema; throws std::invalid_argument naming what is wrong
    /// or unsupported (and where: "properties.age.minimum is not supported").
    static json_schema parse(std::string_view text);

    [[nodiscard]] const node& at(std::size_t i) const noexcept { return m_nodes[i]; }
    [[nodiscard]] std::size_t size() const noexcept { return m_nodes.size(); }
    /// The node of the top-level value (it accepts an object).
    [[nodiscard]] std::uint16_t root() const noexcept { return m_root; }

private:
    friend class json_schema_compiler;
    std::vector<node> m_nodes;
    std::uint16_t m_root = any;
};

} // namespace weft::serve
