#include <weft/sync_wait.hpp>
#include <weft/task.hpp>

#ifdef WEFT_CONSUMER_HTTP
#include <weft/http/request_parser.hpp>
#endif

weft::task<int> f() { co_return 41; }

int main() {
#ifdef WEFT_CONSUMER_HTTP
    weft::http::request_parser p;
    p.feed("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    if (p.next() != weft::http::parse_status::complete) return 2;
#endif
    return weft::sync_wait(f()) == 41 ? 0 : 1;
}
