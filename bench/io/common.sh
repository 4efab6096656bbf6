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

# CPU time (user + system, in clock ticks) used so far by process PID.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# Share of one core (percent) that process PID used between two cpu_ticks
# readings TICKS0 and TICKS1 taken SECONDS apart. A server that was the
# bottleneck shows close to 100; much less means it waited for the client or
# did not get the core (another process ran there: the run is not comparable).
cpu_share() { awk -v a="$1" -v b="$2" -v s="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", 100 * (b - a) / hz / s }'; }
