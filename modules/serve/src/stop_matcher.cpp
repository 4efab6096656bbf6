#include <weft/serve/stop_matcher.hpp>

#include <algorithm>
#include <utility>

namespace weft::serve {

stop_matcher::stop_matcher(std::vector<std::string> stops) : m_stops(std::move(stops)) {
    std::erase_if(m_stops, [](const std::string& s) { return s.empty(); });
}

stop_matcher::result stop_matcher::push(std::string_view text) {
    result out;
    if (m_stopped) {
        out.stopped = true;
        return out;
    }
    m_held.append(text);
    // The held tail never contains a whole stop string, so a search over it
    // plus the new text finds each completed stop exactly once.
    std::size_t first = std::string::npos;
    for (const std::string& stop : m_stops) {
        first = std::min(first, m_held.find(stop));
    }
    if (first != std::string::npos) {
        out.emit = m_held.substr(0, first);
        out.stopped = true;
        m_stopped = true;
        m_held.clear();
        return out;
    }
    // Hold the longest tail that some stop string starts with; any shorter
    // such tail lies inside it.
    std::size_t hold = 0;
    for (const std::string& stop : m_stops) hold = std::max(hold, partial_match(m_held, stop));
    out.emit = m_held.substr(0, m_held.size() - hold);
    m_held.erase(0, m_held.size() - hold);
    return out;
}

std::size_t stop_matcher::partial_match(std::string_view text, std::string_view stop) noexcept {
    for (std::size_t k = std::min(stop.empty() ? 0 : stop.size() - 1, text.size()); k > 0; --k) {
        if (text.substr(text.size() - k) == stop.substr(0, k)) return k;
    }
    return 0;
}

std::string stop_matcher::flush() { return std::exchange(m_held, std::string()); }

} // namespace weft::serve
