# Shared by bench/io/*.sh (sourced).

# Runs a command pinned to one core when there are at least two. It execs, so
# call it in a background job or a subshell: in a background job, $! is then
# the server itself, which cleanup can kill.
pin() { if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then exec taskset -c "$1" "${@:2}"; else exec "${@:2}"; fi; }

# Waits until something accepts connections on 127.0.0.1:PORT.
wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2; return 1
}
