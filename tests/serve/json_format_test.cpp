// JSON Schema `format` in structured outputs: the matcher generates only
// strings of the format, checked against validators written from the RFCs
// (std::chrono's calendar for dates, inet_pton for addresses, regular
// expressions for the rest), not from the matcher's automata.
#include "json_test_support.hpp"

#include <weft/serve/demo_model.hpp>
#include <weft/serve/json_constraint.hpp>
#include <weft/serve/json_schema.hpp>
#include <weft/serve/tokenizer.hpp>

#include <arpa/inet.h>
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <string_view>

using weft::serve::json_constraint;
using weft::serve::json_matcher;
using weft::serve::json_schema;
using json = nlohmann::json;

namespace {

bool valid_date(const std::string& s) {
    static const std::regex shape(R"(\d{4}-\d{2}-\d{2})");
    if (!std::regex_match(s, shape)) return false;
    const std::chrono::year_month_day ymd{std::chrono::year{std::stoi(s.substr(0, 4))},
                                          std::chrono::month{static_cast<unsigned>(std::stoi(s.substr(5, 2)))},
                                          std::chrono::day{static_cast<unsigned>(std::stoi(s.substr(8, 2)))}};
    return ymd.ok();
}

bool valid_time(const std::string& s) {
    static const std::regex re(R"(([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d))");
    return std::regex_match(s, re);
}

/// RFC 3339 appendix A, as written there.
bool valid_duration(const std::string& s) {
    static const std::regex re(
        R"(P((\d+Y(\d+M(\d+D)?)?|\d+M(\d+D)?|\d+D)(T(\d+H(\d+M(\d+S)?)?|\d+M(\d+S)?|\d+S))?)"
        R"(|T(\d+H(\d+M(\d+S)?)?|\d+M(\d+S)?|\d+S)|\d+W))");
    return std::regex_match(s, re);
}

/// RFC 1123 host names: labels of 1-63 letters, digits and inner hyphens,
/// 253 characters in all; `min_labels` of them at least, the last not all
/// digits (as email validators ask of a domain).
bool valid_hostname(const std::string& s, std::size_t min_labels) {
    static const std::regex re(R"(([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)");
    static const std::regex digits(R"(.*\.\d+|\d+)");
    const auto labels = static_cast<std::size_t>(std::count(s.begin(), s.end(), '.')) + 1;
    return s.size() <= 253 && labels >= min_labels && std::regex_match(s, re) && !std::regex_match(s, digits);
}

/// RFC 5321 mailboxes with a dot-atom local part (RFC 5322 atext).
bool valid_email(const std::string& s) {
    static const std::regex local(R"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)");
    const std::size_t at = s.rfind('@');
    if (at == std::string::npos || s.size() > 254 || at > 64) return false;
    return std::regex_match(s.substr(0, at), local) && valid_hostname(s.substr(at + 1), 2);
}

/// RFC 3986 http(s) URIs: scheme, "//", a host name and optional port, then
/// path-abempty, query and fragment of pchars, '/' and '?'.
bool valid_http_uri(const std::string& s) {
    static const std::regex scheme(R"(https?://)");
    static const std::string pchar = R"(([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2}))";
    static const std::regex rest("(:[0-9]+)?(/" + pchar + "*)*(\\?(" + pchar + "|[/?])*)?(#(" + pchar + "|[/?])*)?");
    std::smatch m;
    if (!std::regex_search(s, m, scheme, std::regex_constants::match_continuous)) return false;
    const std::string tail = s.substr(static_cast<std::size_t>(m.length()));
    const std::size_t host_end = std::min(tail.find_first_of(":/?#"), tail.size());
    const std::string host = tail.substr(0, host_end), after = tail.substr(host_end);
    if (!valid_hostname(host, 1) || !std::regex_match(after, rest)) return false;
    if (after.starts_with(':')) {
        const std::size_t digits_end = std::min(after.find_first_of("/?#"), after.size());
        const std::string port = after.substr(1, digits_end - 1);
        return port.size() <= 5 && std::stoul(port) >= 1 && std::stoul(port) <= 65535;
    }
    return true;
}

/// Whether `s` is a value of format `f` (unknown formats: any string).
bool valid_format(std::string_view f, const std::string& s) {
    if (f == "date") return valid_date(s);
    if (f == "time") return valid_time(s);
    if (f == "date-time") {
        return s.size() > 11 && (s[10] == 'T' || s[10] == 't') && valid_date(s.substr(0, 10)) &&
               valid_time(s.substr(11));
    }
    if (f == "duration") return valid_duration(s);
    if (f == "uuid") {
        static const std::regex re(R"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})");
        return std::regex_match(s, re);
    }
    if (f.size() == 5 && f.starts_with("uuid")) {
        // Python's UUID(s).version: the version nibble, given RFC 4122's
        // variant (the top bits of the clock sequence 10).
        if (!valid_format("uuid", s)) return false;
        const int variant = std::stoi(s.substr(19, 1), nullptr, 16) >> 2;
        return s[14] == f[4] && variant == 2;
    }
    if (f == "hostname") return valid_hostname(s, 1);
    if (f == "email") return valid_email(s);
    if (f == "uri") return valid_http_uri(s);
    if (f == "ipv4") {
        in_addr a{};
        return inet_pton(AF_INET, s.c_str(), &a) == 1; // glibc refuses leading zeros, as RFC 2673 does
    }
    if (f == "ipv6") {
        in6_addr a{};
        return inet_pton(AF_INET6, s.c_str(), &a) == 1;
    }
    if (f == "ipvanyaddress") return valid_format("ipv4", s) || valid_format("ipv6", s);
    return true;
}

const json formats = json::parse(R"({"type": "object", "properties": {
    "date": {"type": "string", "format": "date"},
    "time": {"type": "string", "format": "time"},
    "date-time": {"type": "string", "format": "date-time"},
    "duration": {"type": "string", "format": "duration"},
    "uuid": {"type": "string", "format": "uuid"},
    "uuid1": {"type": "string", "format": "uuid1"},
    "uuid4": {"type": "string", "format": "uuid4"},
    "ipv4": {"type": "string", "format": "ipv4"},
    "ipv6": {"type": "string", "format": "ipv6"},
    "ipvanyaddress": {"type": "string", "format": "ipvanyaddress"},
    "hostname": {"type": "string", "format": "hostname"},
    "email": {"type": "string", "format": "email"},
    "uri": {"type": "string", "format": "uri"}}})");

/// Feeds `{"<format>":"<value>"}`; true when every byte is taken and the
/// object completes.
bool generates(const json_schema& schema, std::string_view format, std::string_view value) {
    json_matcher m(&schema);
    const std::string doc = "{\"" + std::string(format) + "\":\"" + std::string(value) + "\"}";
    return m.feed(doc) && m.complete();
}

} // namespace

TEST_CASE("formatted strings take every value of their format and refuse others", "[json][schema][format]") {
    const json_schema s = json_schema::parse(formats.dump());
    const std::vector<std::pair<const char*, std::vector<const char*>>> accepted{
        {"date", {"2024-02-29", "2000-02-29", "2023-12-31", "0000-01-01", "1999-04-30", "9999-09-09"}},
        {"time", {"00:00:00Z", "23:59:59Z", "12:30:05.5+01:00", "08:15:00.123456789-11:30", "19:00:00+23:59"}},
        {"date-time", {"2024-06-01T12:00:00Z", "1970-01-01T00:00:00.000+00:00"}},
        {"duration", {"P1D", "P1Y2M3D", "P2M", "PT1H", "PT1H30M", "PT45S", "P1DT12H", "P3W", "P1Y2M3DT4H5M6S",
                      "P0D", "P1MT2M"}},
        {"uuid", {"123e4567-e89b-12d3-a456-426614174000", "ABCDEF01-2345-6789-abcd-ef0123456789"}},
        {"uuid1", {"123e4567-e89b-12d3-a456-426614174000", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}},
        {"uuid4", {"f47ac10b-58cc-4372-a567-0e02b2c3d479", "00000000-0000-4000-B000-000000000000"}},
        {"ipv4", {"0.0.0.0", "127.0.0.1", "255.255.255.255", "10.20.30.40"}},
        {"ipv6", {"::", "::1", "1::", "2001:db8::8a2e:370:7334", "2001:0db8:0000:0000:0000:ff00:0042:8329",
                  "fe80::1:2:3:4:5:6", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "ABCD:ef01::"}},
        {"ipvanyaddress", {"0.0.0.0", "10.20.30.40", "::", "2001:db8::8a2e:370:7334", "1:2:3:4:5:6:7:8"}},
        {"hostname", {"localhost", "example.com", "a-b.c-d.example.org", "x1.io", "EXAMPLE.COM"}},
        {"email", {"jane.doe@example.com", "a+tag@b.co", "first_last-1@mail.example.org", "x@y-z.eu"}},
        {"uri", {"http://ab", "https://example.com", "https://example.com/", "http://localhost:8080/v1/models",
                 "https://en.wikipedia.org/wiki/C%2B%2B?action=view&x=1#History",
                 "https://a.io/path/with:colon@at;and=eq?q=/slash?again#frag/?", "http://x.org:65535"}},
    };
    const std::vector<std::pair<const char*, std::vector<const char*>>> refused{
        {"date", {"2023-02-29", "1900-02-29", "2024-04-31", "2024-13-01", "2024-00-10", "2024-01-00", "2024-1-01",
                  "24-01-01", "2024-01-011", "2024/01/01", "2024-01-0", ""}},
        {"time", {"24:00:00Z", "23:60:00Z", "23:59:60Z", "12:00:00", "12:00Z", "12:00:00.Z", "12:00:00+24:00",
                  "12:00:00+01", "12:00:00.1234567890Z"}},
        {"date-time", {"2024-06-01 12:00:00Z", "2024-06-01T12:00:00", "2023-02-29T00:00:00Z"}},
        {"duration", {"P", "PT", "P1", "P1Y3D", "P1D2M", "PT1S2M", "P1W2D", "P1DT", "PT1D", "P1.5D", "1D",
                      "P1234567890D"}},
        {"uuid", {"123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400", "g23e4567-e89b-12d3-a456-426614174000",
                  "123e4567-e89b-12d3-a456-4266141740000"}},
        {"uuid1", {"f47ac10b-58cc-4372-a567-0e02b2c3d479", "123e4567-e89b-12d3-c456-426614174000"}},
        {"uuid4", {"123e4567-e89b-12d3-a456-426614174000", "f47ac10b-58cc-4372-7567-0e02b2c3d479",
                   "f47ac10b-58cc-4372-a567-0e02b2c3d47"}},
        {"ipv4", {"256.0.0.1", "01.2.3.4", "1.2.3", "1.2.3.4.", "1..2.3", "1.2.3.4.5", "1.2.3.00", ""}},
        {"ipv6", {"", ":", ":::", "1:::2", "1::2::3", ":1::", "1:", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9",
                  "12345::", "g::", "::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8::", "1::2:3:4:5:6:7:8", "::ffff:1.2.3.4"}},
        {"ipvanyaddress", {"", "1.2.3", "256.0.0.1", "1::2::3", "1.2.3.4:", "::1.2", "1.2:3"}},
        {"hostname", {"", "-a.com", "a-.com", "a..com", "example.", ".com", "example.c0m", "10.0.0.1", "a_b.com",
                      "x", "h\u00e9.com"}},
        {"email", {"jane", "@example.com", "jane@", "jane@localhost", "jane.@example.com", ".jane@example.com",
                   "ja..ne@example.com", "jane@example.c", "jane@@example.com", "jane doe@example.com",
                   "jane@example.123"}},
        {"uri", {"", "http", "http:", "http:/", "http://", "http://a", "ftp://example.com", "HTTP://example.com",
                 "https://example.com:0", "https://example.com:08", "https://example.com:65536", "http://example.com:",
                 "https://exa mple.com", "https://example.com/a b", "https://example.com/%2", "https://example.com/%zz",
                 "https://example.com/a#b#c", "https://-x.com", "https://user@example.com", "https://example.com/<x>"}},
    };
    for (const auto& [format, values] : accepted) {
        for (const char* v : values) {
            INFO(format << ": " << v);
            CHECK(valid_format(format, v));
            CHECK(generates(s, format, v));
        }
    }
    for (const auto& [format, values] : refused) {
        for (const char* v : values) {
            INFO(format << ": " << v);
            CHECK_FALSE(generates(s, format, v));
        }
    }
}

TEST_CASE("a date is refused at the digit that leaves the calendar", "[json][schema][format]") {
    const json_schema s = json_schema::parse(formats.dump());
    // Every day of every month of a leap year, a common year, 1900 and 2000:
    // the matcher takes exactly the days the calendar has, and refuses the
    // first digit after which no day of the month can follow.
    for (const int year : {2023, 2024, 1900, 2000}) {
        for (unsigned month = 1; month <= 12; ++month) {
            for (unsigned day = 0; day <= 39; ++day) {
                const std::string date = fmt::format("{:04}-{:02}-{:02}", year, month, day);
                INFO(date);
                CHECK(generates(s, "date", date) == valid_date(date));
            }
            json_matcher m(&s);
            REQUIRE(m.feed(fmt::format(R"({{"date":"{:04}-{:02}-)", year, month)));
            const unsigned days = static_cast<unsigned>(
                std::chrono::year_month_day_last{std::chrono::year{year}, std::chrono::month_day_last{std::chrono::month{month}}}
                    .day());
            CHECK(json_matcher(m).feed('3') == (days >= 30));
            CHECK_FALSE(json_matcher(m).feed('4'));
        }
    }
}

TEST_CASE("host names and addresses keep room to end within their length limits", "[json][schema][format]") {
    const json_schema s = json_schema::parse(formats.dump());
    const std::string label(63, 'a');
    // 63-character labels, then the fourth: 3 x 64 = 192 characters, 61
    // left of the 253, enough for a last label of letters.
    const std::string three = label + "." + label + "." + label + ".";
    CHECK(generates(s, "hostname", three + std::string(61, 'b')));
    CHECK_FALSE(generates(s, "hostname", three + std::string(62, 'b')));
    CHECK_FALSE(generates(s, "hostname", label + "a.com"));
    // Digits may fill a label only while a dot and two letters still fit.
    json_matcher m(&s);
    REQUIRE(m.feed(R"({"hostname":")" + three + std::string(58, '1')));
    CHECK(json_matcher(m).feed('.'));
    CHECK_FALSE(json_matcher(m).feed('1'));
    CHECK_FALSE(json_matcher(m).feed('"'));
    // The local part of an email stops at 64 characters; a domain follows.
    const std::string local(64, 'j');
    CHECK(generates(s, "email", local + "@example.com"));
    CHECK_FALSE(generates(s, "email", local + "j@example.com"));
    CHECK_FALSE(generates(s, "email", std::string(63, 'j') + ".@example.com"));
}

TEST_CASE("formatted strings can always finish, and what they finish a validator accepts", "[json][schema][format]") {
    const json_schema s = json_schema::parse(formats.dump());
    weft::serve::test::walk_strings(json_matcher(&s), 400, 11, 300, [](const std::string& key, const std::string& v) {
        CHECK(valid_format(key, v));
    });
}

TEST_CASE("formatted strings end within maxLength, which may be as short as a format's shortest value",
          "[json][schema][format]") {
    const std::vector<std::pair<std::string, std::uint32_t>> shortest{
        {"date", 10}, {"time", 9},     {"date-time", 20}, {"duration", 3}, {"uuid", 36}, {"uuid4", 36},
        {"ipv4", 7},  {"ipv6", 2},     {"ipvanyaddress", 2},     {"hostname", 2},   {"email", 6},    {"uri", 9}};
    for (const auto& [format, least] : shortest) {
        INFO(format);
        const auto schema_of = [&, f = format](std::uint32_t max) {
            return fmt::format(R"({{"type": "object", "properties": {{"{}": {{"type": "string", "format": "{}",
                "minLength": {}, "maxLength": {}}}}}}})", f, f, std::min<std::uint32_t>(least, 1), max);
        };
        CHECK_THROWS_WITH(json_schema::parse(schema_of(least - 1)), Catch::Contains("no '" + format + "' value"));
        CHECK_THROWS_WITH(json_schema::parse(fmt::format(
                              R"({{"type": "object", "properties": {{"v": {{"type": "string", "format": "{}", "minLength": {}}}}}}})",
                              format, least + 1)),
                          Catch::Contains("the shortest '" + format + "' value"));
        for (const std::uint32_t max : {least, least + 1, least + 5, least + 40}) {
            const json_schema s = json_schema::parse(schema_of(max));
            weft::serve::test::walk_strings(json_matcher(&s), 60, max, 200, [&](const std::string& key, const std::string& v) {
                CHECK(v.size() <= max);
                CHECK(valid_format(key, v));
                if (max == least) CHECK(v.size() == least);
            });
        }
    }
    // HttpUrl as pydantic writes it.
    const json_schema url = json_schema::parse(
        R"({"type": "object", "properties": {"uri": {"type": "string", "format": "uri", "minLength": 1, "maxLength": 2083}}})");
    CHECK(generates(url, "uri", "https://docs.pydantic.dev/latest/"));
    CHECK_FALSE(generates(url, "uri", "https://example.com/" + std::string(2064, 'a')));
    CHECK(generates(url, "uri", "https://example.com/" + std::string(2063, 'a')));
}

TEST_CASE("format constrains strings only and keeps the enum values of its format", "[json][schema][format]") {
    const json_schema s = json_schema::parse(R"({"type": "object", "properties": {
        "when": {"type": ["string", "null"], "format": "date"},
        "n": {"type": "integer", "format": "int64"},
        "pick": {"type": "string", "format": "ipv4", "enum": ["10.0.0.1", "localhost", "10.0.0.256"]}}})");
    CHECK(json_matcher(&s).feed(R"({"when":null,"n":12,"pick":"10.0.0.1"})"));
    CHECK(json_matcher(&s).feed(R"({"when":"2020-02-29"})"));
    CHECK_FALSE(json_matcher(&s).feed(R"({"when":"tomorrow")"));
    CHECK_FALSE(json_matcher(&s).feed(R"({"pick":"localhost")"));
    CHECK_FALSE(json_matcher(&s).feed(R"({"pick":"10.0.0.256")"));
    // A formatted string takes no escape, even of a character it allows.
    CHECK_FALSE(json_matcher(&s).feed(R"({"when":"\u0032)"));
}

TEST_CASE("the mask inside a formatted string holds exactly the tokens the matcher takes", "[json][schema][format]") {
    // allowed() checks a token within a formatted value on the format's
    // automaton alone; allows() copies the matcher and feeds the token.
    const weft::serve::tokenizer tok(weft::serve::demo_tokenizer(1024));
    const auto vocab = std::make_shared<const weft::serve::token_texts>(tok);
    const auto schema = std::make_shared<const json_schema>(json_schema::parse(R"({"type": "object", "properties": {
        "email": {"type": "string", "format": "email", "maxLength": 24},
        "uri": {"type": "string", "format": "uri", "maxLength": 30},
        "born": {"type": "string", "format": "date"},
        "id": {"type": "string", "format": "uuid"}},
        "required": ["email", "uri", "born", "id"], "additionalProperties": false})"));
    std::mt19937_64 rng(3);
    std::vector<std::uint64_t> bits;
    for (int walk = 0; walk < 12; ++walk) {
        json_constraint c(vocab, schema);
        std::string doc;
        for (int step = 0; step < 200; ++step) {
            INFO(doc);
            const std::size_t count = c.allowed(bits);
            std::vector<weft::serve::token_id> ok;
            for (std::size_t t = 0; t < vocab->size(); ++t) {
                const auto id = static_cast<weft::serve::token_id>(t);
                const bool in = (bits[t / 64] >> (t % 64) & 1) != 0;
                REQUIRE(in == c.allows(id));
                if (in) ok.push_back(id);
            }
            REQUIRE(ok.size() == count);
            if (ok.empty()) break; // complete
            // Whitespace between tokens only where nothing else is taken.
            std::vector<weft::serve::token_id> visible;
            for (const auto id : ok) {
                if ((*vocab)[id].find_first_not_of(" \t\r\n") != std::string_view::npos) visible.push_back(id);
            }
            const auto& pick = visible.empty() ? ok : visible;
            const weft::serve::token_id next = pick[rng() % pick.size()];
            doc += (*vocab)[next];
            REQUIRE(c.advance(next));
        }
        CHECK(c.allowed(bits) == 0); // each walk ends with the object
    }
}
