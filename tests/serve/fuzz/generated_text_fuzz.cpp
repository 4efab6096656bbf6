// libFuzzer target for what the server does with a model's output, which
// may be any bytes at all (built by `scripts/fuzz.sh --target text`): the
// tokenizer (the demo models' byte-level BPE), the streaming decoder, stop
// strings and the tool-call parsers.
//
// The input: one byte that picks how the text is cut into pieces, then up to
// four stop strings each ended by \x01, then \x02, then the text (an input
// without \x02 is all text). Invariants checked on every input:
//  - tokenizer: every id of encode(text) is in the vocabulary, and
//    decode(encode(text)) == text, with and without BOS;
//  - token_stream_decoder, fed those ids one at a time: every chunk is
//    valid UTF-8, and the chunks plus finish() are decode(ids) when that is
//    valid UTF-8;
//  - stop_matcher, fed the pieces: it stops exactly when a stop string
//    occurs; the emitted text is a prefix of the text, holds no stop string,
//    ends where one begins (all of the text, with flush(), when none occurs);
//  - tool_call_parser, each syntax, fed the pieces then finished: the same
//    content and calls whatever the cut; every call names a declared
//    function and has an object of arguments.
#include <weft/serve/demo_model.hpp>
#include <weft/serve/stop_matcher.hpp>
#include <weft/serve/tokenizer.hpp>
#include <weft/serve/tokenizer_stream_decoder.hpp>
#include <weft/serve/tool_call_parser.hpp>

#include "openai_json.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace weft::serve;

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
}

const tokenizer& demo() {
    static const tokenizer tok(demo_tokenizer(512));
    return tok;
}

/// `text` cut into pieces of lengths taken in turn from `pattern`'s digits.
std::vector<std::string_view> cut(std::string_view text, std::uint8_t pattern) {
    std::vector<std::string_view> pieces;
    for (std::size_t at = 0, k = 0; at < text.size(); ++k) {
        const std::size_t len = 1 + ((pattern >> (k % 4 * 2)) & 3) * (1 + k % 3);
        pieces.push_back(text.substr(at, len));
        at += pieces.back().size();
    }
    return pieces;
}

void check_tokenizer(std::string_view text) {
    const tokenizer& tok = demo();
    const std::vector<token_id> ids = tok.encode(text, false);
    for (token_id id : ids) {
        if (id < 0 || static_cast<std::size_t>(id) >= tok.vocab_size()) fail("encode gave an id outside the vocabulary");
    }
    if (tok.decode(ids) != text) fail("decode(encode(text)) != text");
    if (tok.decode(tok.encode(text), true) != text) fail("decode(encode(text with BOS), skip_special) != text");

    token_stream_decoder stream(tok);
    std::string streamed;
    for (token_id id : ids) {
        const std::string chunk = stream.push(id);
        if (!json_out::valid_utf8(chunk)) fail("the stream decoder emitted invalid UTF-8");
        streamed += chunk;
    }
    const std::string tail = stream.finish();
    if (!json_out::valid_utf8(tail)) fail("the stream decoder's finish() is invalid UTF-8");
    streamed += tail;
    if (json_out::valid_utf8(text) && streamed != text) fail("streamed decode differs from decode");
}

void check_stops(const std::vector<std::string>& stops, std::string_view text, std::uint8_t pattern) {
    bool occurs = false;
    for (const std::string& s : stops) occurs = occurs || (!s.empty() && text.find(s) != std::string_view::npos);
    stop_matcher m(stops);
    std::string emitted;
    bool stopped = false;
    for (std::string_view piece : cut(text, pattern)) {
        const stop_matcher::result r = m.push(piece);
        emitted += r.emit;
        stopped = stopped || r.stopped;
    }
    if (!stopped) emitted += m.flush();
    if (stopped != occurs) fail("stop_matcher stopped where no stop occurs, or missed one");
    if (!text.starts_with(emitted)) fail("stop_matcher emitted other than a prefix of the text");
    if (!stopped && emitted.size() != text.size()) fail("stop_matcher lost text");
    bool at_stop = false;
    for (const std::string& s : stops) {
        if (s.empty()) continue;
        if (emitted.find(s) != std::string::npos) fail("stop_matcher emitted a whole stop string");
        at_stop = at_stop || text.substr(emitted.size()).starts_with(s);
    }
    // Stopped, the text goes on with a stop string. (Where one stop string
    // lies inside another, the one that completes first in the stream wins:
    // the cut decides, as in vLLM.)
    if (stopped && !at_stop) fail("stop_matcher stopped where no stop string begins");
}

struct parsed {
    std::string content;
    std::vector<std::pair<std::string, std::string>> calls; // name, arguments
    bool operator==(const parsed&) const = default;
};

parsed parse_calls(tool_call_syntax syntax, const std::vector<std::string>& functions, std::size_t max_calls,
                   const std::vector<std::string_view>& pieces) {
    tool_call_parser p(syntax, functions, max_calls);
    parsed out;
    auto take = [&](tool_call_parser::output o) {
        out.content += o.content;
        for (const chat_tool_call& c : o.calls) out.calls.emplace_back(c.name, c.arguments);
    };
    for (std::string_view piece : pieces) take(p.feed(piece));
    take(p.finish());
    return out;
}

void check_tool_calls(std::string_view text, std::uint8_t pattern) {
    const std::vector<std::string> functions{"get_weather", "search", "a"};
    const std::vector<std::string_view> whole{text};
    const std::vector<std::string_view> pieces = cut(text, pattern);
    for (const tool_call_syntax syntax :
         {tool_call_syntax::none, tool_call_syntax::hermes, tool_call_syntax::llama3_json, tool_call_syntax::mistral}) {
        for (const std::size_t max_calls : {std::size_t{0}, std::size_t{1}}) {
            const parsed a = parse_calls(syntax, functions, max_calls, whole);
            const parsed b = parse_calls(syntax, functions, max_calls, pieces);
            if (!(a == b)) fail("tool_call_parser's result depends on how the text is cut");
            if (max_calls != 0 && a.calls.size() > max_calls) fail("more calls than max_calls");
            for (const auto& [name, arguments] : a.calls) {
                if (name != "get_weather" && name != "search" && name != "a") fail("a call of an undeclared function");
                const nlohmann::json args = nlohmann::json::parse(arguments, nullptr, false);
                if (args.is_discarded() || !args.is_object()) fail("a call's arguments are not a JSON object");
            }
        }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t pattern = data[0];
    std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    std::vector<std::string> stops;
    if (const std::size_t split = rest.find('\x02'); split != std::string_view::npos) {
        std::string_view list = rest.substr(0, split);
        rest.remove_prefix(split + 1);
        while (!list.empty() && stops.size() < 4) {
            const std::size_t end = list.find('\x01');
            stops.emplace_back(list.substr(0, end));
            list.remove_prefix(end == std::string_view::npos ? list.size() : end + 1);
        }
    }
    check_tokenizer(rest);
    check_stops(stops, rest, pattern);
    check_tool_calls(rest, pattern);
    return 0;
}
