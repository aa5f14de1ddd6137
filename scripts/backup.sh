#!/usr/bin/env bash
# Back up the Evently database: pg_dump's custom format (-Fc), restored by scripts/restore.sh.
#
#   scripts/backup.sh [FILE]
#
# The database is the one `make run` uses: DATABASE_URL (from the environment or .env;
# postgresql+asyncpg:// is read as postgresql://), else the local or embedded server that
# scripts.devenv finds. FILE defaults to backups/evently-<database>-<UTC time>.dump.
# PG_BIN names a folder with pg_dump when the one found is missing or older than the server.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
	echo "backup: $*" >&2
	exit 1
}

# shellcheck source=scripts/pgtools.sh
source "$ROOT/scripts/pgtools.sh"

main() {
	if [[ "${1:-}" == "-h" || "${1:-}" == "--help" || $# -gt 1 ]]; then
		sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		[[ $# -le 1 ]] || exit 2
		exit 0
	fi
	if [[ -z "${DATABASE_URL:-}" && -z "${EVENTLY_BACKUP_RESOLVED:-}" ]]; then
		# Let scripts.devenv find the database as `make run` does (.env, local, embedded).
		[[ -x "$ROOT/.venv/bin/python" ]] || die "DATABASE_URL is not set (and no .venv to find one)"
		cd "$ROOT"
		EVENTLY_BACKUP_RESOLVED=1 exec "$ROOT/.venv/bin/python" -m scripts.devenv exec -- \
			"$ROOT/scripts/backup.sh" "$@"
	fi
	[[ -n "${DATABASE_URL:-}" ]] || die "DATABASE_URL is not set"
	local url database file tool
	url="$(libpq_url "$DATABASE_URL")"
	database="${url##*/}"
	database="${database%%\?*}"
	file="${1:-$ROOT/backups/evently-$database-$(date -u +%Y%m%d-%H%M%S).dump}"
	tool="$(pg_tool pg_dump "$url")"
	mkdir -p "$(dirname "$file")"
	# Written aside and renamed: a failed dump never leaves a partial file under FILE.
	if ! "$tool" --format=custom --file="$file.partial" --dbname="$url"; then
		rm -f "$file.partial"
		die "$("$tool" --version) could not back up database $database (above: why;" \
			"a server newer than this client needs PG_BIN set to a newer client's folder)"
	fi
	mv "$file.partial" "$file"
	echo "backup: database $database -> $file ($(du -h "$file" | cut -f1))"
}

main "$@"
