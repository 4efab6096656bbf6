// libFuzzer target for weft::http::request_parser (built by scripts/fuzz.sh).
//
// The first bytes of the input choose the limits and how the rest is split into
// feeds; the rest is the request stream. Invariants checked on every input:
//  - the parser never crashes, leaks or reads out of bounds (ASan/UBSan);
//  - errors carry a status from the allowed set and a non-empty reason, and the
//    parser stays failed;
//  - feeding the same bytes in one piece gives the same requests and outcome
//    (the parser is split-invariant);
//  - decoded bodies respect max_body_bytes, header counts max_header_count.
#include <weft/http/request_parser.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace weft::http;

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
}

struct outcome {
    std::vector<request> requests;
    parse_status last = parse_status::need_more;
    int status = 0;
};

bool allowed_status(int s) { return s == 400 || s == 413 || s == 431 || s == 501 || s == 505; }

outcome run(std::string_view input, const std::vector<std::size_t>& splits, const limits& lim) {
    request_parser p(lim);
    outcome out;
    std::size_t pos = 0;
    std::size_t k = 0;
    while (pos < input.size() && out.last != parse_status::error) {
        std::size_t n = splits.empty() ? input.size() : splits[k++ % splits.size()];
        if (n > input.size() - pos) n = input.size() - pos;
        p.feed(input.substr(pos, n));
        pos += n;
        for (;;) {
            out.last = p.next();
            if (out.last != parse_status::complete) break;
            request r = p.take();
            if (r.body.size() > lim.max_body_bytes) fail("body over the limit");
            if (r.headers.size() > lim.max_header_count) fail("too many headers");
            if (r.method_name.empty() || r.target.empty()) fail("empty method or target");
            out.requests.push_back(std::move(r));
        }
    }
    if (out.last == parse_status::error) {
        if (!allowed_status(p.error().status)) fail("error status outside the allowed set");
        if (p.error().reason.empty()) fail("error without a reason");
        p.feed("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        if (p.next() != parse_status::error) fail("parser left the error state");
    } else if (p.has_error()) {
        fail("error reported without error status");
    }
    out.status = p.error().status;
    return out;
}

bool same(const request& a, const request& b) {
    if (a.method != b.method || a.method_name != b.method_name || a.target != b.target ||
        a.version != b.version || a.body != b.body || a.headers.size() != b.headers.size()) {
        return false;
    }
    auto it = b.headers.begin();
    for (const auto& f : a.headers) {
        if (f != *it++) return false;
    }
    return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    limits lim;
    // Byte 0: small limits now and then, so the 413/431 paths are reachable.
    if (data[0] & 1) {
        lim.max_header_bytes = 64 + (data[0] >> 1) * 4;
        lim.max_body_bytes = data[0] >> 2;
        lim.max_header_count = 1 + (data[0] >> 4);
        lim.max_chunk_line_bytes = 8 + (data[0] >> 3);
    }
    // Bytes 1..2: the split pattern (piece sizes 1..16, cycled).
    std::vector<std::size_t> splits = {
        static_cast<std::size_t>(data[1] & 15) + 1, static_cast<std::size_t>(data[1] >> 4) + 1,
        static_cast<std::size_t>(data[2] & 15) + 1, static_cast<std::size_t>(data[2] >> 4) + 1};
    const std::string_view input(reinterpret_cast<const char*>(data + 3), size - 3);

    const outcome split = run(input, splits, lim);
    const outcome whole = run(input, {}, lim);
    const outcome bytewise = run(input, {1}, lim);
    for (const outcome* o : {&whole, &bytewise}) {
        if (o->status != split.status) fail("outcome depends on how the input is split");
        if (o->requests.size() != split.requests.size()) fail("request count depends on the split");
        for (std::size_t i = 0; i < split.requests.size(); ++i) {
            if (!same(o->requests[i], split.requests[i])) fail("request depends on the split");
        }
    }
    return 0;
}
