#!/usr/bin/env bash
# Restore an Evently backup made by scripts/backup.sh (pg_dump -Fc) into a database.
#
#   scripts/restore.sh FILE [DATABASE_URL]
#
# REPLACES the target's Evently tables with the backup's (pg_restore --clean --if-exists,
# in one transaction: on any error the target is left as it was). The target is the URL
# given, else the one `make run` uses (DATABASE_URL, .env, else the local or embedded server
# scripts.devenv finds; postgresql+asyncpg:// is read as postgresql://). It must exist
# (createdb NAME). PG_BIN names a folder with pg_restore when the one found will not do.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
	echo "restore: $*" >&2
	exit 1
}

# shellcheck source=scripts/pgtools.sh
source "$ROOT/scripts/pgtools.sh"

usage() {
	sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
	case "${1:-}" in
	-h | --help)
		usage
		exit 0
		;;
	"")
		usage >&2
		die "which backup? give the FILE to restore (backups are under backups/)"
		;;
	esac
	[[ $# -le 2 ]] || die "too many arguments: FILE [DATABASE_URL]"
	local file="$1" target="${2:-${DATABASE_URL:-}}" url database tool
	[[ -f "$file" && -r "$file" ]] || die "no readable backup file at $file"
	if [[ -z "$target" && -z "${EVENTLY_RESTORE_RESOLVED:-}" && -x "$ROOT/.venv/bin/python" ]]; then
		# Let scripts.devenv find the database as `make run` does (.env, local, embedded).
		file="$(cd "$(dirname "$file")" && pwd)/$(basename "$file")"
		cd "$ROOT"
		EVENTLY_RESTORE_RESOLVED=1 exec "$ROOT/.venv/bin/python" -m scripts.devenv exec -- \
			"$ROOT/scripts/restore.sh" "$file"
	fi
	[[ -n "$target" ]] || die "no target: give a DATABASE_URL after FILE, or set DATABASE_URL"
	url="$(libpq_url "$target")"
	database="${url##*/}"
	database="${database%%\?*}"
	tool="$(pg_tool pg_restore "$url")"
	"$tool" --list "$file" >/dev/null || die "$file is not a backup $("$tool" --version) can read"
	echo "restore: $file -> database $database (its Evently tables are replaced)"
	if ! "$tool" --clean --if-exists --no-owner --single-transaction --dbname="$url" "$file"; then
		die "nothing was changed: $("$tool" --version) could not restore into $database (above: why)"
	fi
	echo "restore: done"
}

main "$@"
