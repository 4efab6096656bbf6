#include <weft/http/router.hpp>

#include <weft/stop.hpp>

#include <exception>
#include <stdexcept>

namespace weft::http {

namespace {
/// The segments of a path, one at a time, without allocating.
class segment_cursor {
public:
    explicit segment_cursor(std::string_view path) noexcept : m_rest(path) {
        if (!m_rest.empty() && m_rest.front() == '/') m_rest.remove_prefix(1);
    }
    /// The next segment; false when there is none left.
    bool next(std::string_view& seg) noexcept {
        if (m_done) return false;
        const std::size_t slash = m_rest.find('/');
        seg = m_rest.substr(0, slash);
        if (slash == std::string_view::npos) {
            m_done = true;
        } else {
            m_rest.remove_prefix(slash + 1);
        }
        return true;
    }

private:
    std::string_view m_rest;
    bool m_done = false;
};

std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> out;
    if (!path.empty() && path.front() == '/') path.remove_prefix(1);
    while (true) {
        const std::size_t slash = path.find('/');
        out.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
    }
    return out;
}

bool is_param(std::string_view seg) noexcept {
    return seg.size() >= 2 && seg.front() == '{' && seg.back() == '}';
}

void add_connection_close(const request& req, header_map& h) {
    if (!req.keep_alive() && !h.has_token("connection", "close")) h.set("Connection", "close");
}
} // namespace

namespace {
int hex_digit(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string_view find_param(const context::param_list& list, std::string_view name) noexcept {
    for (const auto& [k, v] : list) {
        if (k == name) return v;
    }
    return {};
}
} // namespace

std::string percent_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%' && i + 2 < text.size()) {
            const int hi = hex_digit(text[i + 1]);
            const int lo = hex_digit(text[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        out += text[i];
    }
    return out;
}

context::context(param_list params, std::stop_token token) : m_raw(std::move(params)), m_stop(std::move(token)) {
    bool escaped = false;
    for (const auto& p : m_raw) escaped = escaped || p.second.find('%') != std::string::npos;
    if (escaped) {
        m_decoded.reserve(m_raw.size());
        for (const auto& [k, v] : m_raw) m_decoded.emplace_back(k, percent_decode(v));
    }
}

std::string_view context::param(std::string_view name) const noexcept { return find_param(params(), name); }

std::string_view context::raw_param(std::string_view name) const noexcept { return find_param(m_raw, name); }

router& router::add_route(std::string method_name, std::string_view pattern, handler h, stream_handler s) {
    if (pattern.empty() || pattern.front() != '/') {
        throw std::invalid_argument("router: pattern must start with '/'");
    }
    route r;
    r.method_name = std::move(method_name);
    for (const std::string_view seg : split_path(pattern)) r.segments.emplace_back(seg);
    r.plain = std::move(h);
    r.streaming = std::move(s);
    m_routes.push_back(std::move(r));
    return *this;
}

router& router::add(method m, std::string_view pattern, handler h) {
    return add_route(std::string(to_string(m)), pattern, std::move(h), {});
}

router& router::add(std::string_view method_name, std::string_view pattern, handler h) {
    return add_route(std::string(method_name), pattern, std::move(h), {});
}

router& router::add_stream(method m, std::string_view pattern, stream_handler h) {
    return add_route(std::string(to_string(m)), pattern, {}, std::move(h));
}

namespace {
/// Whether `path` matches the pattern `segments`.
bool path_matches(const std::vector<std::string>& segments, std::string_view path) noexcept {
    segment_cursor cursor(path);
    std::string_view seg;
    for (const std::string& pat : segments) {
        if (!cursor.next(seg)) return false;
        if (is_param(pat) ? seg.empty() : pat != seg) return false;
    }
    return !cursor.next(seg);
}

context::param_list params_of(const std::vector<std::string>& segments, std::string_view path) {
    context::param_list params;
    segment_cursor cursor(path);
    std::string_view seg;
    for (const std::string& pat : segments) {
        cursor.next(seg);
        if (is_param(pat)) params.emplace_back(pat.substr(1, pat.size() - 2), std::string(seg));
    }
    return params;
}
} // namespace

router::match_result router::match(std::string_view method_name, std::string_view path) const {
    match_result result;
    std::vector<std::string_view> allowed;
    for (const route& r : m_routes) {
        if (!path_matches(r.segments, path)) continue;
        if (r.method_name == method_name) {
            result.kind = match_kind::found;
            result.matched = &r;
            result.params = params_of(r.segments, path);
            return result;
        }
        bool dup = false;
        for (const auto a : allowed) dup = dup || a == r.method_name;
        if (!dup) allowed.push_back(r.method_name);
    }
    if (!allowed.empty()) {
        result.kind = match_kind::method_not_allowed;
        for (std::size_t i = 0; i < allowed.size(); ++i) {
            if (i != 0) result.allow += ", ";
            result.allow += allowed[i];
        }
    }
    return result;
}

namespace {
/// Ends a HEAD request's stream handler after its head.
struct head_sent {};

/// Passes the head through and ends the handler at the first body byte: a
/// HEAD response has no body. The head is the first write, or starts it
/// (chunked_writer::begin sends it with the first chunk).
class head_only_sink final : public byte_sink {
public:
    explicit head_only_sink(byte_sink& out) noexcept : m_out(out) {}
    task<void> write(std::span<const std::byte> bytes) override {
        if (m_head_written) throw head_sent{};
        m_head_written = true;
        const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        const std::size_t end = text.find("\r\n\r\n");
        const std::size_t head = end == std::string_view::npos ? text.size() : end + 4;
        co_await m_out.write(bytes.first(head));
        if (head < bytes.size()) throw head_sent{};
    }

private:
    byte_sink& m_out;
    bool m_head_written = false;
};
} // namespace

task<void> router::serve(request& req, byte_sink& out) const {
    match_result m = match(req.method_name, req.path());
    const bool head = req.method == method::head;
    if (m.kind != match_kind::found && head) {
        match_result get = match("GET", req.path());
        if (get.kind == match_kind::found) m = std::move(get);
    }
    response resp;
    if (m.kind == match_kind::not_found) {
        resp = response(404, "Not Found\n", "text/plain");
    } else if (m.kind == match_kind::method_not_allowed) {
        resp = response(405, "Method Not Allowed\n", "text/plain");
        resp.headers.set("Allow", m.allow);
    } else {
        context ctx(std::move(m.params), co_await get_stop_token());
        if (m.matched->streaming) {
            head_only_sink head_sink(out);
            chunked_writer writer(head ? static_cast<byte_sink&>(head_sink) : out);
            std::exception_ptr error;
            bool ended_after_head = false;
            try {
                co_await m.matched->streaming(req, ctx, writer);
            } catch (const operation_cancelled&) {
                throw;
            } catch (const head_sent&) {
                ended_after_head = true;
            } catch (...) {
                if (writer.started()) throw;
                error = std::current_exception();
            }
            if (ended_after_head) co_return;
            if (!error) {
                if (!writer.started()) {
                    header_map h;
                    add_connection_close(req, h);
                    co_await writer.start(200, std::move(h));
                }
                if (head) {
                    co_await writer.send_head();
                } else {
                    co_await writer.finish();
                }
                co_return;
            }
            resp = response(500, "Internal Server Error\n", "text/plain");
        } else {
            bool failed = false;
            try {
                resp = co_await m.matched->plain(req, ctx);
            } catch (const operation_cancelled&) {
                throw;
            } catch (...) {
                failed = true;
            }
            if (failed) resp = response(500, "Internal Server Error\n", "text/plain");
        }
    }
    add_connection_close(req, resp.headers);
    std::string bytes = serialize(resp);
    if (head) bytes.resize(bytes.size() - resp.body.size());  // head only
    co_await out.write_string(bytes);
}

} // namespace weft::http
