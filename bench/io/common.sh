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
# readings TICKS0 and TICKS1 taken SECONDS apart. On an otherwise idle
# machine the server and the client together use nearly both cores (the one
# that is the bottleneck close to 100, the other not far below); a clearly
# smaller sum means another process took one of the cores and the run is not
# comparable (see undisturbed).
cpu_share() { awk -v a="$1" -v b="$2" -v s="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", 100 * (b - a) / hz / s }'; }

# Runs CMD... pinned to CORE (see pin) and writes its CPU time to FILE (bash's
# `times`, whose second line is the finished child's "XmY.YYYs XmY.YYYs",
# user and system): client_timed FILE CORE CMD...
client_timed() {
  local f=$1 core=$2
  shift 2
  ( (pin "$core" "$@"); times > "$f" )
}

# Share of one core (percent) from client_timed's FILE over SECONDS.
client_share() {
  awk -v s="$2" 'NR == 2 { split($1, u, /[ms]/); split($2, y, /[ms]/);
                   printf "%.0f", 100 * (u[1] * 60 + u[2] + y[1] * 60 + y[2]) / s }' "$1"
}

# Whether a run had both cores to itself: server + client shares >= BENCH_MIN_CPU
# (default 170 percent of a core).
undisturbed() { (($1 + $2 >= ${BENCH_MIN_CPU:-170})); }
